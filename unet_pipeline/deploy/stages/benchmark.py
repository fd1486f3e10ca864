"""Benchmark: engine-only latency/throughput of the built artifact, self-describing and comparable.

What is timed is written down with the figures: warm-up, iterations and seconds, sync or async with N
requests, batch, threads, precision as compiled, and the machine. Inputs are real preprocessed images held
in memory, so no decode is timed. A per-device file lock keeps parallel jobs from timing at the same time;
the wait is recorded, not timed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock
from omegaconf import DictConfig
from tqdm import tqdm

from unet_pipeline.core import CallLimits
from unet_pipeline.data import Sample, load_input
from unet_pipeline.deploy.spec import preprocessing
from unet_pipeline.deploy.stages.evaluate import Evaluation, pad_batch
from unet_pipeline.engines import BuildSpec, Engine, Session
from unet_pipeline.record import EndToEnd, EngineTiming, JobRecord, VendorRun

T = TypeVar("T")
F = TypeVar("F", EngineTiming, EndToEnd)


def gpu_name() -> str | None:
    """The CUDA device's name (result.json -> machine.gpu), None where CUDA is not available."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@contextmanager
def device_lock(device: str, lock_dir: str | None) -> Iterator[float]:
    """Hold the device for timing; yields how long the wait for it took (seconds, not part of any timing)."""
    directory = Path(lock_dir or Path(tempfile.gettempdir()) / "unet_pipeline_locks")
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with FileLock(str(directory / f"{device}.lock")):
        yield time.perf_counter() - start


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "min": float(ms.min()),
        "mean": float(ms.mean()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "std": float(ms.std()),
    }


def _calls(session: Session, batch: np.ndarray, limits: CallLimits, desc: str, progress: bool) -> list[float]:
    """Synchronous calls under `limits`, each one's seconds; a bar naming what is timed, with an ETA."""
    latencies: list[float] = []
    start = time.perf_counter()
    with tqdm(desc=desc, unit="call", total=limits.calls, disable=not progress, leave=False) as bar:
        while limits.more(len(latencies), time.perf_counter() - start):
            t0 = time.perf_counter()
            session.infer_shared(batch)  # as the inference loop calls it, and as benchmark_app: no output copy
            latencies.append(time.perf_counter() - t0)
            bar.total = limits.expected_calls(len(latencies), time.perf_counter() - start)
            bar.update()
    return latencies


def time_sync(session: Session, batch: np.ndarray, cfg, progress: bool) -> EngineTiming:
    """Warm-up, then calls one request at a time, each bounded by count and time (CallLimits)."""
    warm = CallLimits(cfg.warmup_iterations, cfg.warmup_seconds, cfg.warmup_max_seconds)
    timed = CallLimits(cfg.iterations, cfg.min_seconds, cfg.max_seconds)
    start = time.perf_counter()
    warm_calls = _calls(session, batch, warm, f"benchmark warm-up, batch {len(batch)}", progress)
    warm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    latencies = _calls(session, batch, timed, f"benchmark engine sync, batch {len(batch)}", progress)
    total = time.perf_counter() - start
    return EngineTiming(
        mode="sync",
        requests=1,
        batch=len(batch),
        warmup={"iterations": len(warm_calls), "seconds": round(warm_seconds, 3)},
        iterations=len(latencies),
        seconds=round(total, 3),
        budget=timed.describe(),
        capped=timed.capped(len(latencies), total),
        latency_ms=latency_stats(latencies),
        throughput_ips=len(batch) * len(latencies) / total,
    )


def interleave(
    engine_round: Callable[[], EngineTiming], end_to_end: Callable[[], T], first: T, repeats: int
) -> tuple[list[EngineTiming], list[T]]:
    """`repeats` engine-only rounds, each followed by one more end-to-end pass (the first pass is given).

    Why: a shared or throttling machine drifts by 10 % and more within a minute, so an end-to-end figure and
    an engine-only figure taken minutes apart compare two machines. Alternating them, each pass next to its
    round, lets the ratio be taken pair by pair and the figures be medians.
    """
    rounds, passes = [], [first]
    for index in range(repeats):
        rounds.append(engine_round())
        if index + 1 < repeats:
            passes.append(end_to_end())
    return rounds, passes


def median_rounds(rounds: list[EngineTiming], passes: list[EndToEnd]) -> tuple[EngineTiming, EndToEnd]:
    """The engine round and the end-to-end pass of median throughput (the lower middle of an even count),
    each with every repeat's throughput, and end to end / engine-only taken pair by pair (the median ratio)."""

    def median(figures: list[F]) -> F:
        return sorted(figures, key=lambda x: x.throughput_ips)[(len(figures) - 1) // 2]

    engine = replace(median(rounds), rounds_ips=[x.throughput_ips for x in rounds])
    ratios = [p.throughput_ips / e.throughput_ips for p, e in zip(passes, rounds, strict=True)]
    e2e = replace(median(passes), passes_ips=[x.throughput_ips for x in passes], vs_engine=float(np.median(ratios)))
    return engine, e2e


def time_async(session: Session, batch: np.ndarray, cfg, call_ms: float, progress: bool) -> EngineTiming | None:
    """Throughput with `async_requests` requests in flight, where the session supports it: every request warmed
    once, then timed calls, both within one `max_seconds` (a floor of `iterations` and `min_seconds`).

    Skipped, and saying why, when warming every request and one more round (2 x requests calls of `call_ms`, the
    sync p50) would not fit in `max_seconds`: on a CPU the requests share the cores, so that is the least it takes.
    """
    requests = cfg.async_requests
    if requests <= 1 or not session.supports_async:
        return None
    least = 2 * requests * call_ms / 1e3
    if least > cfg.max_seconds:
        return EngineTiming(
            mode="async",
            requests=requests,
            skipped=f"async not timed: {requests} requests x 2 rounds of {call_ms / 1e3:.3g} s calls "
            f"exceed benchmark.max_seconds={cfg.max_seconds:g}",
        )
    start = time.perf_counter()
    session.run_async(batch, requests, CallLimits(requests, 0.0, 0.0))  # every request once
    warm_seconds = time.perf_counter() - start
    timed = CallLimits(cfg.iterations, cfg.min_seconds, max(cfg.max_seconds - warm_seconds, 0.0))
    desc = f"benchmark engine async x{requests}, batch {len(batch)}"
    with tqdm(desc=desc, unit="call", total=timed.calls, disable=not progress, leave=False) as bar:
        start = time.perf_counter()

        def started() -> None:
            bar.total = timed.expected_calls(bar.n + 1, time.perf_counter() - start)  # for the ETA
            bar.update()

        iterations, seconds = session.run_async(batch, requests, timed, on_call=started)
    return EngineTiming(
        mode="async",
        requests=requests,
        batch=len(batch),
        warmup={"iterations": requests, "seconds": round(warm_seconds, 3)},
        iterations=iterations,
        seconds=round(seconds, 3),
        budget=timed.describe(),
        capped=timed.capped(iterations, seconds),
        throughput_ips=len(batch) * iterations / seconds,
    )


def benchmark_notes(rounds: list[EngineTiming], engine_async: EngineTiming | None, cfg) -> list[str]:
    """What the table must say about figures the cap cut short, or a measurement it skipped."""
    notes = []
    capped = [r for r in rounds if r.capped]
    if capped:
        calls = ", ".join(str(r.iterations) for r in capped)
        notes.append(
            f"engine figures capped at benchmark.max_seconds={cfg.max_seconds:g}: rest on {calls} call(s) "
            f"(asked >= {cfg.iterations} and >= {cfg.min_seconds:g} s)"
        )
    if engine_async and engine_async.skipped:
        notes.append(engine_async.skipped)
    elif engine_async and engine_async.capped:
        notes.append(
            f"async figure capped at benchmark.max_seconds={cfg.max_seconds:g}: rests on "
            f"{engine_async.iterations} call(s)"
        )
    return notes


def find_tool(name: str) -> str | None:
    """An executable on PATH, or beside the running interpreter: a venv's tools (benchmark_app comes with the
    openvino wheel) are there even when the venv is not activated (`venv/bin/python -m unet_pipeline`)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_vendor_tool(command: list[str], parse, timeout: float) -> VendorRun:
    """The engine vendor's own benchmark on the same artifact (benchmark_app, mm_run); an `error` when it is not
    installed, fails or times out."""
    executable = find_tool(command[0])
    if executable is None:
        return VendorRun(command, error=f"{command[0]} not found on PATH or beside {sys.executable}")
    command = [executable, *command[1:]]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return VendorRun(command, error=f"timed out after {timeout:.0f} s")
    output = proc.stdout + proc.stderr
    result = VendorRun(command, proc.returncode, parse(output))
    if proc.returncode != 0:
        result.error = output.strip().splitlines()[-1] if output.strip() else f"exit {proc.returncode}"
    return result


def benchmark_job(
    cfg: DictConfig,
    engine: Engine,
    session: Session,
    artifact: Path,
    spec: BuildSpec,
    samples: list[Sample],
    record: JobRecord,
    end_to_end: Callable[[], Evaluation],
    first: Evaluation,
) -> None:
    """Engine-only figures on the first evaluation batch, held in memory, interleaved with `benchmark.repeats`
    end-to-end passes (the first is the inference stage's); async and the vendor tool on request."""
    inputs = [load_input(s, spec.input_hw, preprocessing(cfg), spec.uint8_nhwc) for s in samples[: spec.batch]]
    batch = pad_batch(np.stack(inputs), spec)
    bench = cfg.benchmark
    rounds, passes = interleave(
        lambda: time_sync(session, batch, bench, cfg.progress), end_to_end, first, bench.repeats
    )
    figures = record.benchmark
    figures.engine, figures.end_to_end = median_rounds(rounds, [p.figures() for p in passes])
    if any(p.dice != first.dice for p in passes):
        worst = max(float(np.max(np.abs(np.subtract(p.dice, first.dice)))) for p in passes)
        record.notes.append(f"Dice differed between timing passes (largest per-image difference {worst:.2g})")
    figures.engine_async = time_async(session, batch, bench, figures.engine.latency_ms["p50"], cfg.progress)
    record.notes += benchmark_notes(rounds, figures.engine_async, bench)
    if bench.vendor_tool:
        tool = engine.vendor_benchmark(artifact, spec, bench.vendor_seconds, bench.async_requests)
        figures.vendor = run_vendor_tool(*tool, timeout=bench.vendor_seconds * 6 + 120) if tool else None
        if tool is None:
            record.notes.append(f"benchmark.vendor_tool: engine={engine.name} has no vendor benchmark tool")
        elif figures.vendor.error:
            record.notes.append(f"benchmark.vendor_tool: {figures.vendor.error}")
