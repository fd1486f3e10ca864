"""The train task: milesial-format checkpoints, car-disjoint splits, resume, and the bundled weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_pipeline.config import bundled_checkpoint
from unet_pipeline.core import PipelineError
from unet_pipeline.data import DEFAULT_PREP, list_samples, load_pair, select_eval, to_model_input
from unet_pipeline.deploy import run_job
from unet_pipeline.model import load_unet
from unet_pipeline.training import train
from unet_pipeline.training.batches import crop_size, make_batch, train_val_samples
from unet_pipeline.training.distill import distill_loss, soft_targets, teacher_models

from .conftest import TINY_FRAME

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


JITTER_EMA = ["train.ema_decay=0.9", "train.photometric.brightness=0.2"]


@pytest.mark.parametrize("extra", [[], JITTER_EMA], ids=["plain", "jitter_ema"])
def test_interrupted_training_resumes_to_the_same_result(compose_cfg, train_data, tmp_path, monkeypatch, extra):
    import unet_pipeline.training.loop as train_module

    overrides = [*TINY_TRAIN, f"data.root={train_data}", *extra, "train.epochs=3"]
    whole = tmp_path / "whole"
    whole.mkdir()
    reference = train(compose_cfg(overrides, config_name="train"), whole)

    part = tmp_path / "part"
    part.mkdir()
    real_validate, calls = train_module.mean_validation_dice, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 2 * (1 + bool(extra)):  # with EMA, two validations an epoch
            raise KeyboardInterrupt  # killed during epoch 2
        return real_validate(*args)

    monkeypatch.setattr(train_module, "mean_validation_dice", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(compose_cfg(overrides, config_name="train"), part)
    monkeypatch.setattr(train_module, "mean_validation_dice", real_validate)
    resumed = train(compose_cfg([*overrides, f"train.resume={part / 'last.pth'}"], config_name="train"), part)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    for got, want in zip(resumed["history"], reference["history"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert got["val_dice"] == pytest.approx(want["val_dice"], abs=1e-4)
        assert got.get("val_dice_raw", 0) == pytest.approx(want.get("val_dice_raw", 0), abs=1e-4)

    longer = compose_cfg([*overrides[:-1], "train.epochs=5", f"train.resume={part / 'last.pth'}"], config_name="train")
    with pytest.raises(PipelineError, match="continues a run of 3 epochs"):
        train(longer, tmp_path / "x")


def test_crops_cut_image_and_mask_at_the_same_place():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 64, 96, 3), dtype=np.uint8)
    labels = (pixels[..., 0] > 127).astype(np.uint8)  # each label follows its own pixel
    soft = labels.astype(np.float16) * 3 - 1  # teacher targets: cut with the labels, or they teach the wrong pixels
    x, y, t = make_batch(pixels, labels, (32, 48), np.random.default_rng(1), soft)
    assert x.shape == (3, 3, 32, 48) and y.shape == (3, 32, 48) and y.dtype == torch.int64
    assert torch.equal(y, (x[:, 0] > 127 / 255).long()) and torch.equal(t, y.to(torch.float16) * 3 - 1)
    corners = [x_i.numpy()[:, :1, :1] for x_i in x]  # where each crop's top-left pixel sits in its image
    offsets = {tuple(np.argwhere((to_model_input(p) == c).all(0))[0]) for p, c in zip(pixels, corners, strict=True)}
    assert len(offsets) > 1  # each image at its own offset
    whole, _, no_teacher = make_batch(pixels, labels, None, np.random.default_rng(1))
    assert no_teacher is None
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


def test_teachers_targets_are_their_mean_logit_upsampled(compose_cfg, train_data, tmp_path, tiny_checkpoint):
    """One teacher at the student's own scale gives its logit difference exactly; a teacher at half the scale is
    upsampled to the student's size; training with them runs and records them."""
    teachers = f"train.teachers=[{{checkpoint:{tiny_checkpoint},scale:1.0}},{{checkpoint:{tiny_checkpoint},scale:0.5}}]"
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", f"train.init_checkpoint={tiny_checkpoint}",
                       "train.epochs=1", teachers], "train")  # fmt: skip
    samples, _ = train_val_samples(list_samples(cfg.data.root, cfg.data), cfg)
    soft = soft_targets(samples[:2], cfg, (64, 96), progress=False)
    net, _ = load_unet(cfg.model, tiny_checkpoint)
    with torch.no_grad():
        own = [net(torch.from_numpy(load_pair(s, (64, 96), DEFAULT_PREP)[0][None])) for s in samples[:2]]
        half = [net(torch.from_numpy(load_pair(s, (32, 48), DEFAULT_PREP)[0][None])) for s in samples[:2]]
    for got, full, low in zip(soft, own, half, strict=True):
        up = torch.nn.functional.interpolate(low, size=(64, 96), mode="bilinear", align_corners=False)
        want = ((full[0, 1] - full[0, 0]) + (up[0, 1] - up[0, 0])) / 2
        assert soft.dtype == np.float16 and np.allclose(got, want.numpy(), atol=2e-3, rtol=1e-3)
    summary = train(cfg, tmp_path / "run")
    assert [t["scale"] for t in summary["teachers"]] == [1.0, 0.5] and 0 < summary["best_val_dice"] <= 1


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.init_checkpoint={missing}", "train.init_checkpoint="),
        ("train.teachers=[{{checkpoint:{tiny},scale:0.5}},{{checkpoint:{missing},scale:1.0}}]", "train.teachers[1]"),
    ],
)
def test_a_missing_checkpoint_fails_before_any_decoding(compose_cfg, train_data, tmp_path, tiny_checkpoint,
                                                        monkeypatch, override, key):  # fmt: skip
    """Minutes of decoding are not spent before a typo in a checkpoint path: the error names the key."""
    missing = tmp_path / "stage2.pth"
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", override.format(missing=missing, tiny=tiny_checkpoint)],
                      "train")  # fmt: skip
    monkeypatch.setattr(
        "unet_pipeline.training.loop.load_arrays", lambda *a, **k: pytest.fail("decoded before the check")
    )
    with pytest.raises(PipelineError, match=rf"{re.escape(key)}.*{re.escape(str(missing))}: no such file"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_teacher_targets_are_kept_in_the_run_and_rebuilt_when_damaged(compose_cfg, train_data, tmp_path,
                                                                       tiny_checkpoint, monkeypatch):  # fmt: skip
    import unet_pipeline.training.distill as distill

    teachers = f"train.teachers=[{{checkpoint:{tiny_checkpoint},scale:0.5}}]"
    cfg = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", teachers], "train")
    samples = train_val_samples(list_samples(cfg.data.root, cfg.data), cfg)[0][:3]
    first = distill.cached_soft_targets(samples, cfg, (64, 96), tmp_path, progress=False)
    computed = []
    real = distill.soft_targets
    monkeypatch.setattr(distill, "soft_targets", lambda *a: computed.append(1) or real(*a))
    assert np.array_equal(distill.cached_soft_targets(samples, cfg, (64, 96), tmp_path, False), first)
    assert computed == []  # read back: the resumed run does not pay for them again
    data = bytearray((tmp_path / "teacher_targets.npy").read_bytes())
    data[-5] ^= 1
    (tmp_path / "teacher_targets.npy").write_bytes(bytes(data))
    assert np.array_equal(distill.cached_soft_targets(samples, cfg, (64, 96), tmp_path, False), first)
    assert computed == [1]  # damaged: computed again, never trusted
    distill.cached_soft_targets(samples[:2], cfg, (64, 96), tmp_path, False)
    assert computed == [1, 1]  # other photos: another key


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.distill_temperature=0", "train.distill_temperature=0.0 must be > 0"),
        ("train.teachers=[{checkpoint:x.pth,scale:2}]", r"train.teachers scale 2.0 must be in \(0, 1\]"),
        ("model.n_classes=3", "train.teachers needs model.n_classes=2"),
    ],
)
def test_bad_distillation_settings_are_one_line(compose_cfg, override, message):
    teachers = "train.teachers=[{checkpoint:x.pth,scale:0.5}]"
    cfg = compose_cfg([*TINY_TRAIN, *([teachers] if "teachers" not in override else []), override], "train")
    with pytest.raises(PipelineError, match=message):
        teacher_models(cfg)


def test_distillation_loss_is_flat_where_the_student_agrees_with_its_teachers():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    distill_loss(logits, (logits[:, 1] - logits[:, 0]).detach(), temperature=2.0).backward()
    assert logits.grad.abs().max() < 1e-7
    other = torch.randn(2, 2, 8, 8, requires_grad=True)
    distill_loss(other, (logits[:, 1] - logits[:, 0]).detach(), temperature=2.0).backward()
    assert other.grad.abs().max() > 1e-4


@pytest.mark.parametrize(
    ("name", "limit_mb"),
    [
        ("unet_demo.pth", 4),
        ("unet_carvana_small.pth", 16),
        ("unet_carvana_small_640.pth", 16),
        ("unet_carvana_medium_640.pth", 20),
    ],
)
def test_bundled_checkpoints_are_small_milesial_files(name, limit_mb):
    path = Path(bundled_checkpoint(name))
    assert path.is_file(), f"{name} is not bundled"
    assert path.stat().st_size < limit_mb * 1e6
    assert torch.load(path, weights_only=True)["mask_values"] == [0, 1]


def test_a_refit_trains_on_every_non_evaluation_car_and_keeps_its_last_epoch(compose_cfg, train_data, tmp_path):
    """train.val_fraction=0: the validation cars join training (never the evaluation cars), nothing is validated,
    and best.pth is the last epoch's weights."""
    split = compose_cfg([*TINY_TRAIN, f"data.root={train_data}"], config_name="train")
    samples = list_samples(split.data.root, split.data)
    train_set, val_set = train_val_samples(samples, split)
    refit = compose_cfg([*TINY_TRAIN, f"data.root={train_data}", "train.val_fraction=0", "train.epochs=2"], "train")
    everything, none = train_val_samples(samples, refit)
    assert none == [] and {s.image for s in everything} == {s.image for s in train_set + val_set}
    summary = train(refit, tmp_path / "run")
    assert summary["best_val_dice"] is None and [h["val_dice"] for h in summary["history"]] == [None, None]
    best = torch.load(tmp_path / "run" / "best.pth", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in last.items())
