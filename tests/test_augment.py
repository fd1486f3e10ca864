"""Training-only regularisers: colour jitter of the photos (never their labels) and a moving average of the weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from unet_pipeline.core import PipelineError
from unet_pipeline.training import train
from unet_pipeline.training.augment import check_photometric, jitter
from unet_pipeline.training.batches import make_batch

from .test_train import TINY_TRAIN


def settings(**values: float):
    return OmegaConf.create({"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "channel_shuffle": 0.0, **values})


def photos(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 24, 3), dtype=np.uint8)


def test_zero_settings_leave_the_photos_as_they_are():
    x = photos()
    assert np.array_equal(jitter(x, settings(), np.random.default_rng(1)), x)


def test_channel_shuffle_permutes_the_colours_of_each_photo():
    x = photos(8)
    out = jitter(x, settings(channel_shuffle=1.0), np.random.default_rng(1))
    assert out.dtype == np.uint8 and out.shape == x.shape
    for got, photo in zip(out, x, strict=True):  # each output channel is one input channel, whole
        assert all(any(np.array_equal(got[..., c], photo[..., k]) for k in range(3)) for c in range(3))
    assert not np.array_equal(out, x)  # 8 photos: some order other than R, G, B


def test_saturation_scales_the_colour_spread_and_brightness_the_level():
    x = np.full((4, 16, 24, 3), 100, np.uint8)
    x[..., 0] = 160  # a reddish grey: spread 60 between channels, far from clipping
    spread = lambda a: np.ptp(a.astype(np.float32), axis=-1).mean((1, 2))  # noqa: E731
    saturated = jitter(x, settings(saturation=0.5), np.random.default_rng(1))
    ratio = spread(saturated) / spread(x)  # blended with its own grey: the spread scales by the factor
    assert np.all((ratio > 0.49) & (ratio < 1.51)) and np.ptp(ratio) > 0.01  # each photo its own factor
    assert np.allclose(saturated.astype(np.float32) @ [0.299, 0.587, 0.114], x[0, 0, 0] @ [0.299, 0.587, 0.114], atol=1)
    bright = jitter(x, settings(brightness=0.5), np.random.default_rng(2)).astype(np.float32)
    level = bright.mean((1, 2, 3)) / x.astype(np.float32).mean((1, 2, 3))
    assert np.all((level > 0.49) & (level < 1.51)) and np.ptp(level) > 0.01


def test_jitter_changes_photos_never_labels_or_targets():
    x = photos()
    labels = (x[..., 0] > 127).astype(np.uint8)
    soft = labels.astype(np.float16) * 3 - 1
    plain = make_batch(x, labels, None, np.random.default_rng(3), soft)
    jittered = make_batch(x, labels, None, np.random.default_rng(3), soft, settings(brightness=0.3, contrast=0.3))
    assert not torch.equal(plain[0], jittered[0])
    assert torch.equal(plain[1], jittered[1]) and torch.equal(plain[2], jittered[2])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"brightness": 1.5}, r"train.photometric.brightness=1.5 must be in \[0, 1\)"),
        ({"saturation": -0.1}, r"train.photometric.saturation=-0.1 must be in \[0, 1\)"),
        ({"channel_shuffle": 2.0}, r"train.photometric.channel_shuffle=2.0 is a probability"),
    ],
)
def test_bad_photometric_settings_are_one_line(values, message):
    with pytest.raises(PipelineError, match=message):
        check_photometric(settings(**values))


def test_moving_average_is_what_is_validated_and_saved(compose_cfg, train_data, tmp_path):
    """With train.ema_decay the saved weights are the average, not the last step's; both Dice are recorded."""
    overrides = [*TINY_TRAIN, f"data.root={train_data}", "train.epochs=1", "train.ema_decay=0.9",
                 "train.photometric.brightness=0.2", "train.photometric.channel_shuffle=0.5"]  # fmt: skip
    summary = train(compose_cfg(overrides, config_name="train"), tmp_path / "run")
    assert all(0 < h["val_dice"] <= 1 and 0 < h["val_dice_raw"] <= 1 for h in summary["history"])
    last = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    best = torch.load(tmp_path / "run" / "best.pth", weights_only=True)
    name = "inc.double_conv.0.weight"
    assert not torch.equal(last["ema"][f"module.{name}"], last["model"][name])  # the average lags the weights
    assert torch.equal(best[name], last["ema"][f"module.{name}"])  # one epoch: best is its average
    with pytest.raises(PipelineError, match="must be in \\(0, 1\\)"):
        train(compose_cfg([*overrides[:-3], "train.ema_decay=1.5"], config_name="train"), tmp_path / "bad")
