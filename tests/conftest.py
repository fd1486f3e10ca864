"""Shared fixtures: configs composed the way users compose them, tiny datasets and checkpoints."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from unet_pipeline.data import synthetic
from unet_pipeline.model import UNet
from unet_pipeline.training import register_train_configs

REPO = Path(__file__).resolve().parents[1]
CARVANA = Path(os.environ.get("UNET_TEST_CARVANA", REPO.parent / "shared" / "data" / "carvana"))
TINY_FRAME = (96, 64)  # width, height of the generated frames; model.scale=1 keeps them as they are

register_train_configs()  # the pipeline's schemas and resolvers, and train's


def needs_carvana() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (CARVANA / "imgs").is_dir(),
        reason=f"real Carvana data not found at {CARVANA} (../shared/data/carvana beside the checkout)",
    )


def write_dataset(root: Path, cars: int = 4, views: int = 3, frame: tuple[int, int] = TINY_FRAME) -> Path:
    """A small Carvana-layout dataset from the project's synthetic generator (no external data needed)."""
    return synthetic.write_dataset(root, cars=cars, views=views, frame=frame, seed=7)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


def write_checkpoint(path: Path, base_width: int = 4, seed: int = 0, bilinear: bool = False) -> Path:
    """A milesial-format checkpoint of random weights (state_dict + mask_values)."""
    torch.manual_seed(seed)
    state = UNet(base_width=base_width, bilinear=bilinear).state_dict()
    state["mask_values"] = [0, 1]
    torch.save(state, path)
    return path


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "tiny.pth")


@pytest.fixture
def train_data(tmp_path: Path) -> Path:
    """Ten tiny cars of two views: enough for a car-disjoint train / validation / evaluation split."""
    return write_dataset(tmp_path / "data", cars=10, views=2)


@pytest.fixture
def compose_cfg() -> Callable[..., DictConfig]:
    """compose(overrides) of the primary config, as `python -m unet_pipeline <overrides>` would."""

    def _compose(overrides: list[str] | None = None, config_name: str = "pipeline") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
            return compose(config_name, overrides=overrides or [])

    yield _compose
    GlobalHydra.instance().clear()


def tiny_overrides(data_root: Path, checkpoint: Path) -> list[str]:
    """Overrides that shrink a job to seconds: the generated frames, a width-4 UNet, no progress bars."""
    return [
        "data=carvana",
        f"data.root={data_root}",
        f"model.checkpoint={checkpoint}",
        "model.base_width=4",
        "model.scale=1.0",
        f"data.frame_width={TINY_FRAME[0]}",
        f"data.frame_height={TINY_FRAME[1]}",
        "data.val_fraction=0.5",
        "calibration.num_samples=3",
        "benchmark.warmup_iterations=1",
        "benchmark.warmup_seconds=0",
        "benchmark.iterations=3",
        "benchmark.min_seconds=0.1",
        "progress=false",
        f"cache.dir={data_root.parent / 'cache'}",
    ]


@pytest.fixture
def tiny_job_cfg(compose_cfg, tiny_dataset, tiny_checkpoint) -> Callable[..., DictConfig]:
    def _cfg(*extra: str) -> DictConfig:
        return compose_cfg([*tiny_overrides(tiny_dataset, tiny_checkpoint), *extra])

    return _cfg


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, module: str = "unet_pipeline"):
    """Run `python -m <module> args` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory) -> Iterator[str]:
    """One real MLflow tracking server for the session (tests/tracking_server.py); skips without the extra."""
    pytest.importorskip("mlflow", reason='MLflow not installed: pip install ".[mlflow]"')
    from .tracking_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as (uri, _):
        yield uri


@dataclass
class Sweep:
    """A finished sweep: where it ran, with which arguments, and where it was tracked (None: not tracked)."""

    dir: Path
    cwd: Path
    args: list[str]
    tracking_uri: str | None = None
    experiment: str = "sweep2x2"
    stdout: str = ""


@pytest.fixture(scope="session")
def sweep_2x2(tmp_path_factory, request) -> Sweep:
    """fp32 and int8 at batch 1 and 2 on the tiny dataset, run once for the session by the CLI: read by the table
    tests (test_sweeps.py) and, logged to the session's MLflow server where the extra is installed, by
    test_tracking.py. Tests that change the sweep dir copy it first."""
    root = tmp_path_factory.mktemp("sweep_2x2")
    data, checkpoint = write_dataset(root / "data"), write_checkpoint(root / "tiny.pth")
    sweep = Sweep(dir=root / "sweep", cwd=root, args=[])
    tracking = []
    if importlib.util.find_spec("mlflow") is not None:
        sweep.tracking_uri = request.getfixturevalue("tracking_server")
        tracking = ["logger=mlflow", f"logger.tracking_uri={sweep.tracking_uri}",
                    f"logger.experiment={sweep.experiment}", "logger.timeout_s=3"]  # fmt: skip
    sweep.args = ["-m", "precision=force_float32,qint8_mixed_float32", "batch=1,2", f"hydra.sweep.dir={sweep.dir}",
                  *tiny_overrides(data, checkpoint), *tracking]  # fmt: skip
    proc = run_cli(*sweep.args, cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep.stdout = proc.stdout
    return sweep
