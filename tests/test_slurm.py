"""A real one-node SLURM cluster on localhost (scripts/slurm_local.sh): sweeps through `hydra/launcher=slurm`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import REPO, run_cli, tiny_overrides

# slow: bringing the cluster up and two sweeps through it take ~80 s of the 15-minute default suite on 2 cores;
# `python -m pytest -m slow` runs them
pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "slurm_local.sh"
COLUMNS = ["job.precision", "job.batch", "status", "metrics.dice", "metrics.num_images"]


@pytest.fixture(scope="module")
def slurm_env():
    """Bring the cluster up in its own state dir for this module and down again by its pidfiles."""
    if os.geteuid() != 0 and not shutil.which("slurmctld"):
        pytest.skip("the local SLURM cluster needs root (apt-get install slurm-wlm munge, daemons as root)")
    state = Path(tempfile.mkdtemp(prefix="unet-slurm-", dir="/tmp"))  # munged (user munge) must reach it
    state.chmod(0o755)
    up = subprocess.run(["bash", str(SCRIPT), "up", str(state)], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        logs = "\n".join(p.read_text()[-1500:] for p in state.glob("*.log"))
        subprocess.run(["bash", str(SCRIPT), "down", str(state)], check=False)
        pytest.fail(f"slurm_local.sh up failed:\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}\n{logs}")
    env = {"SLURM_CONF": str(state / "slurm.conf"), "PATH": f"{state / 'bin'}:{os.environ['PATH']}"}
    yield env
    subprocess.run(["bash", str(SCRIPT), "down", str(state)], check=False, timeout=120)


def _slurm(*extra: str) -> list[str]:
    return ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", *extra]


def test_slurm_sweep_gives_the_same_table_as_the_local_launcher(slurm_env, tmp_path, tiny_dataset, tiny_checkpoint):
    precisions = "precision=force_float32,qint8_mixed_float32,qint8_mixed_float16"
    sweep = ["-m", precisions, *tiny_overrides(tiny_dataset, tiny_checkpoint)]
    local = run_cli(*sweep, f"hydra.sweep.dir={tmp_path / 'local'}", cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    remote = run_cli(*sweep, *_slurm(), f"hydra.sweep.dir={tmp_path / 'slurm'}", cwd=tmp_path, env=slurm_env)
    assert remote.returncode == 0, remote.stderr[-3000:]
    assert "submitted SLURM jobs" in remote.stderr + remote.stdout
    ours = pd.read_csv(tmp_path / "slurm" / "results.csv")[COLUMNS]
    theirs = pd.read_csv(tmp_path / "local" / "results.csv")[COLUMNS]
    assert len(ours) == 3 and (ours["status"] == "completed").all()
    pd.testing.assert_frame_equal(ours, theirs)
    assert list((tmp_path / "slurm").glob(".submitit/*/*_log.out"))  # the jobs really ran under SLURM


def _squeue(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, env={**os.environ, **env}
    )
    return out.stdout.split("\n")


def test_a_cancelled_job_is_a_failed_row_and_the_sweep_ends(slurm_env, tmp_path, tiny_dataset, tiny_checkpoint):
    """array_parallelism=1 keeps job #1 pending while #0 runs; scancel it; the sweep must end, with its table."""
    args = ["-m", "precision=force_float32,qint8_mixed_float32", *tiny_overrides(tiny_dataset, tiny_checkpoint)]
    args += _slurm("hydra.launcher.array_parallelism=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    env = {**os.environ, **slurm_env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "unet_pipeline", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        pending: list[str] = []
        while not pending:  # #0 running means submitit has already seen #1 in the queue
            assert time.monotonic() < deadline and proc.poll() is None, "never reached: #0 running, #1 pending"
            states = dict(line.split() for line in _squeue(slurm_env) if line.strip())
            running = any(k.endswith("_0") and v == "RUNNING" for k, v in states.items())
            pending = [k for k, v in states.items() if k.endswith("_1") and v == "PENDING"] if running else []
            time.sleep(0.2)
        subprocess.run(["scancel", pending[0]], check=True, env=env)
        output, _ = proc.communicate(timeout=300)  # fails fast: no hang waiting for a job that will never run
    finally:
        proc.kill()
    assert proc.returncode == 1, output[-3000:]
    table = pd.read_csv(tmp_path / "sweep" / "results.csv")
    assert list(table["status"]) == ["completed", "failed"]
    assert list(table["job.precision"]) == ["force_float32", "qint8_mixed_float32"]  # labelled though it never ran
    assert "ended as CANCELLED" in table["error"][1]
