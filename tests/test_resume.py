"""Sweeps at scale on one machine: cache hits across jobs, resume, kill -9, parallel launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import run_cli, tiny_overrides

PRECISIONS = "precision=force_float32,qint8_mixed_float32,qint8_mixed_float16"


def records(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/result.json"))]


def cache_events(sweep: Path, stage: str) -> list[bool]:
    return [r["cache"][stage]["hit"] for r in records(sweep)]


def test_sweep_exports_once_builds_per_precision_and_resumes_by_skipping(tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    args = ["-m", PRECISIONS, "batch=1,2", "shape=dynamic", f"hydra.sweep.dir={sweep}"]
    args += tiny_overrides(tiny_dataset, tiny_checkpoint)
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = records(sweep)
    assert len(first) == 6 and all(r["status"] == "completed" for r in first)
    # one graph per distinct export: the demo model aligns its int8 input and feeds it uint8 NHWC (both follow
    # the precision), so fp32 has one graph and both int8 precisions share the other, across both batches
    graphs = {(r["job"]["align"], r["cache"]["export"]["key"]) for r in first}
    assert len(graphs) == 2 and cache_events(sweep, "export").count(False) == 2
    engine_keys = {r["cache"]["engine"]["key"] for r in first}
    assert len(engine_keys) == 3 and cache_events(sweep, "engine").count(False) == 3  # one per precision

    proc = run_cli(*args, cwd=tmp_path)  # the same sweep again: every job already completed
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert records(sweep) == first  # untouched records: skipped, not re-run
    assert len(pd.read_csv(sweep / "results.csv")) == 6

    proc = run_cli(*args, "force=true", cwd=tmp_path)  # re-run, but every artifact comes from the cache
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(cache_events(sweep, "export")) and all(cache_events(sweep, "engine"))  # the first run had misses


@pytest.mark.slow  # ~23 s; the identity check is also unit-tested in test_cache.py
def test_a_changed_config_in_the_same_dir_is_re_run(tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    base = ["-m", f"hydra.sweep.dir={sweep}", *tiny_overrides(tiny_dataset, tiny_checkpoint)]
    assert run_cli(*base, "precision=force_float32", cwd=tmp_path).returncode == 0
    (before,) = records(sweep)
    assert run_cli(*base, "precision=qint8_mixed_float32", cwd=tmp_path).returncode == 0
    (after,) = records(sweep)
    assert after["job"]["precision"] == "qint8_mixed_float32" and after["identity"] != before["identity"]


def _wait_for(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the sweep"
        time.sleep(0.2)


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.slow  # ~31 s; with the 10 kill -9 trials
def test_kill_9_mid_sweep_then_rerun_completes_the_table(tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    args = ["-m", PRECISIONS, "batch=2", f"hydra.sweep.dir={sweep}", *tiny_overrides(tiny_dataset, tiny_checkpoint)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "unet_pipeline", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _status(sweep / "1" / "result.json") == "running" or proc.poll() is not None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = json.loads((sweep / "0" / "result.json").read_text())
    assert done_before["status"] == "completed" and _status(sweep / "1" / "result.json") == "running"

    table = run_cli(str(sweep), module="unet_pipeline.results", cwd=tmp_path)
    assert table.returncode == 1 and "did not finish" in (sweep / "results.md").read_text()

    proc = run_cli(*args, cwd=tmp_path)  # resume
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(sweep / "results.csv")
    assert len(table) == 3 and (table["status"] == "completed").all()
    assert json.loads((sweep / "0" / "result.json").read_text()) == done_before  # finished work kept
    cache = tmp_path / "cache"
    assert not list(cache.glob("*/.*.tmp"))  # no half-built entry left behind


def test_joblib_launcher_runs_jobs_in_parallel_processes_sharing_the_cache(tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "precision=force_float32,qint8_mixed_float32",
        "model.align=0",  # both precisions on one graph (int8 is aligned and fed uint8 NHWC by default),
        "model.input_format=float_nchw",  # built once under the lock
        f"hydra.sweep.dir={sweep}",
        f"benchmark.lock_dir={tmp_path / 'locks'}",
        *tiny_overrides(tiny_dataset, tiny_checkpoint),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    done = records(sweep)
    assert [r["status"] for r in done] == ["completed", "completed"]
    assert len({r["process"]["pid"] for r in done}) == 2  # two worker processes
    assert sorted(cache_events(sweep, "export")) == [False, True]  # built once, under the lock
    assert list(pd.read_csv(sweep / "results.csv")["job.precision"]) == ["force_float32", "qint8_mixed_float32"]
