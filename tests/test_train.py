"""The train task: milesial-format checkpoints, car-disjoint splits, resume, and the bundled weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_pipeline.config import bundled_checkpoint
from unet_pipeline.data import list_samples, select_eval, to_model_input
from unet_pipeline.errors import PipelineError
from unet_pipeline.job import run_job
from unet_pipeline.train import crop_size, make_batch, train, train_val_samples

from .conftest import TINY_FRAME, write_dataset

TINY_TRAIN = [
    "model=unet_demo",
    "model.checkpoint=null",
    "model.base_width=4",
    "model.scale=1.0",
    "data=carvana",
    f"data.frame_width={TINY_FRAME[0]}",
    f"data.frame_height={TINY_FRAME[1]}",
    "data.val_fraction=0.2",
    "train.val_fraction=0.2",
    "train.batch_size=4",
    "train.progress=false",
]


@pytest.fixture
def train_data(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data", cars=10, views=2)


def test_three_way_car_split(compose_cfg, train_data):
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}"], config_name="train")
    samples = list_samples(cfg.data.root, cfg.data)
    evaluation = {s.car for s in select_eval(samples, cfg.data)}
    train_set, val_set = train_val_samples(samples, cfg)
    train_cars, val_cars = {s.car for s in train_set}, {s.car for s in val_set}
    assert evaluation and train_cars and val_cars
    assert not (evaluation & train_cars) and not (evaluation & val_cars) and not (train_cars & val_cars)


def test_train_writes_milesial_checkpoints(compose_cfg, train_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", "train.epochs=2"], config_name="train")
    summary = train(cfg, out)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    best = torch.load(out / "best.pth", weights_only=True)
    assert best["mask_values"] == [0, 1] and "inc.double_conv.0.weight" in best
    assert json.loads((out / "train.json").read_text())["best_val_dice"] == summary["best_val_dice"]
    # the pipeline evaluates what training wrote
    job = compose_cfg(
        [
            "model.base_width=4",
            "model.scale=1.0",
            "data=carvana",
            f"data.root={train_data}",
            f"data.frame_width={TINY_FRAME[0]}",
            f"data.frame_height={TINY_FRAME[1]}",
            f"model.checkpoint={out / 'best.pth'}",
            "progress=false",
            "benchmark.enabled=false",
        ]
    )
    assert run_job(job, tmp_path / "job")["status"] == "completed"


def test_interrupted_training_resumes_to_the_same_result(compose_cfg, train_data, tmp_path, monkeypatch):
    import unet_pipeline.train as train_module

    overrides = [*TINY_TRAIN, f"data.root={train_data}", "train.epochs=3"]
    whole = tmp_path / "whole"
    whole.mkdir()
    reference = train(compose_cfg(overrides, config_name="train"), whole)

    part = tmp_path / "part"
    part.mkdir()
    real_validate, calls = train_module.validate, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during epoch 2
        return real_validate(*args)

    monkeypatch.setattr(train_module, "validate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg(overrides, config_name="train"), part)
    monkeypatch.setattr(train_module, "validate", real_validate)
    resumed = train(compose_cfg([*overrides, f"train.resume={part / 'last.pth'}"], config_name="train"), part)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["val_dice"] == pytest.approx(want["val_dice"], abs=1e-4)

    longer = compose_cfg([*overrides[:-1], "train.epochs=5", f"train.resume={part / 'last.pth'}"], config_name="train")
    with pytest.raises(PipelineError, match="continues a run of 3 epochs"):
        train(longer, tmp_path / "x")


def test_crops_cut_image_and_mask_at_the_same_place():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    labels = (pixels[..., 0] > 127).astype(np.uint8)  # each label follows its own pixel
    x, y = make_batch(pixels, labels, (32, 48), np.random.default_rng(1))
    assert x.shape == (3, 3, 32, 48) and y.shape == (3, 32, 48) and y.dtype == torch.int64
    assert torch.equal(y, (x[:, 0] > 127 / 255).long())
    corners = [x_i.numpy()[:, :1, :1] for x_i in x]  # where each crop's top-left pixel sits in its image
    offsets = {tuple(np.argwhere((to_model_input(p) == c).all(0))[0]) for p, c in zip(pixels, corners, strict=True)}
    assert len(offsets) > 1  # each image at its own offset
    whole, _ = make_batch(pixels, labels, None, np.random.default_rng(1))
    assert np.array_equal(whole.numpy(), np.stack([to_model_input(p) for p in pixels]))  # as the engine is fed


def test_crop_larger_than_the_input_is_refused(compose_cfg):
    cfg = compose_cfg([*TINY_TRAIN, "train.crop=[64,200]"], config_name="train")
    with pytest.raises(PipelineError, match=r"train.crop=\[64, 200\] must be .* within the model input 64x96"):
        crop_size(cfg.train, (64, 96))


def test_training_on_crops_validates_on_whole_inputs(compose_cfg, train_data, tmp_path):
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", "train.epochs=1", "train.crop=[32,48]"], "train")
    summary = train(cfg, tmp_path)
    assert summary["crop"] == [32, 48] and summary["input_size"] == [64, 96]
    assert 0 < summary["best_val_dice"] <= 1


@pytest.mark.parametrize(
    ("name", "limit_mb"), [("unet_demo.pth", 4), ("unet_carvana_small.pth", 16), ("unet_carvana_small_640.pth", 16)]
)
def test_bundled_checkpoints_are_small_milesial_files(name, limit_mb):
    path = Path(bundled_checkpoint(name))
    assert path.is_file(), f"{name} is not bundled"
    assert path.stat().st_size < limit_mb * 1e6
    assert torch.load(path, weights_only=True)["mask_values"] == [0, 1]
