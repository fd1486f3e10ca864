"""Benchmark: engine-only latency/throughput of the built artifact, self-describing and comparable.

What is timed is written down with the figures: warm-up, iterations and seconds, sync or async with N
requests, batch, threads, precision as compiled, and the machine. Inputs are real preprocessed images held
in memory, so no decode is timed. A per-device file lock keeps parallel jobs from timing at the same time;
the wait is recorded, not timed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from .. import isa
from ..engines.base import Session

T = TypeVar("T")

_FLAGS = re.compile(r"^(avx2|avx512\w*|amx\w*|avx_vnni\w*|fma|f16c)$")


def machine_info(device: str) -> dict[str, Any]:
    """CPU model and the flags that decide speed, core count, and the GPU where one is used."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "cpu_flags": sorted(f for f in isa.cpu_flags() if _FLAGS.match(f)),
    }
    try:
        model = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        info["cpu_model"] = model.group(1).strip() if model else platform.processor()
    except OSError:
        info["cpu_model"] = platform.processor()
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


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


def _warm_up(session: Session, batch: np.ndarray, cfg) -> dict[str, Any]:
    start, count = time.perf_counter(), 0
    while count < cfg.warmup_iterations or time.perf_counter() - start < cfg.warmup_seconds:
        session.infer(batch)
        count += 1
    return {"iterations": count, "seconds": round(time.perf_counter() - start, 3)}


def time_sync(session: Session, batch: np.ndarray, cfg, progress: bool) -> dict[str, Any]:
    """At least `iterations` calls and at least `min_seconds`, one request at a time."""
    warmup = _warm_up(session, batch, cfg)
    latencies: list[float] = []
    start = time.perf_counter()
    with tqdm(desc="benchmark (sync)", unit="it", disable=not progress) as bar:
        while len(latencies) < cfg.iterations or time.perf_counter() - start < cfg.min_seconds:
            t0 = time.perf_counter()
            session.infer(batch)
            latencies.append(time.perf_counter() - t0)
            bar.update()
    total = time.perf_counter() - start
    return {
        "mode": "sync",
        "requests": 1,
        "batch": len(batch),
        "warmup": warmup,
        "iterations": len(latencies),
        "seconds": round(total, 3),
        "latency_ms": latency_stats(latencies),
        "throughput_ips": len(batch) * len(latencies) / total,
    }


def interleave(
    engine_round: Callable[[], dict[str, Any]], end_to_end: Callable[[], T], first: T, repeats: int
) -> tuple[list[dict[str, Any]], list[T]]:
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


def median_rounds(rounds: list[dict[str, Any]], passes: list[dict[str, Any]]) -> tuple[dict, dict]:
    """The engine round and the end-to-end pass of median throughput (the lower middle of an even count),
    each with every repeat's throughput, and end to end / engine-only taken pair by pair (the median ratio)."""

    def median(records: list[dict[str, Any]]) -> dict[str, Any]:
        ranked = sorted(records, key=lambda x: x["throughput_ips"])
        return dict(ranked[(len(ranked) - 1) // 2])

    engine = {**median(rounds), "rounds_ips": [x["throughput_ips"] for x in rounds]}
    ratios = [p["throughput_ips"] / e["throughput_ips"] for p, e in zip(passes, rounds, strict=True)]
    e2e = {**median(passes), "passes_ips": [x["throughput_ips"] for x in passes], "vs_engine": float(np.median(ratios))}
    return engine, e2e


def time_async(session: Session, batch: np.ndarray, cfg) -> dict[str, Any] | None:
    """Throughput with `async_requests` requests in flight, where the session supports it."""
    if cfg.async_requests <= 1 or not session.supports_async:
        return None
    session.run_async(batch, cfg.async_requests, cfg.warmup_iterations, 0.0)  # warm every request
    iterations, seconds = session.run_async(batch, cfg.async_requests, cfg.iterations, cfg.min_seconds)
    return {
        "mode": "async",
        "requests": cfg.async_requests,
        "batch": len(batch),
        "iterations": iterations,
        "seconds": round(seconds, 3),
        "throughput_ips": len(batch) * iterations / seconds,
    }


def find_tool(name: str) -> str | None:
    """An executable on PATH, or beside the running interpreter: a venv's tools (benchmark_app comes with the
    openvino wheel) are there even when the venv is not activated (`venv/bin/python -m unet_pipeline`)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def run_vendor_tool(command: list[str], parse, timeout: float) -> dict[str, Any]:
    """The engine vendor's own benchmark on the same artifact (benchmark_app, mm_run); an `error` when it is not
    installed, fails or times out."""
    executable = find_tool(command[0])
    if executable is None:
        return {"command": command, "error": f"{command[0]} not found on PATH or beside {sys.executable}"}
    command = [executable, *command[1:]]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": command, "error": f"timed out after {timeout:.0f} s"}
    output = proc.stdout + proc.stderr
    result = {"command": command, "returncode": proc.returncode, **parse(output)}
    if proc.returncode != 0:
        result["error"] = output.strip().splitlines()[-1] if output.strip() else f"exit {proc.returncode}"
    return result
