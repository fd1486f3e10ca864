"""Photometric augmentation for training: label-preserving changes of a photo's colours.

Training sees 51 cars; a held-out car of another colour (a dark blue one whose shadow reads as car) is where
the 640x959 weights lose most. Jittering brightness, contrast and saturation and permuting the colour channels
show each training car in many colours, so colour alone stops being evidence of "car". Only training uses it:
the model's preprocessing (inference, calibration, evaluation) is unchanged, and the teachers' soft targets
stay those of the unchanged photo, which the change does not move."""

from __future__ import annotations

import numpy as np
from omegaconf import DictConfig

from unet_pipeline.core import PipelineError

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, as PIL's convert("L") and torchvision


def check_photometric(settings: DictConfig) -> None:
    """One line naming the key and its range, before minutes of decoding."""
    for key in ("brightness", "contrast", "saturation"):
        value = float(settings[key])
        if not 0.0 <= value < 1.0:
            raise PipelineError(f"train.photometric.{key}={value} must be in [0, 1) (0 turns it off; e.g. 0.2)")
    if not 0.0 <= float(settings.channel_shuffle) <= 1.0:
        raise PipelineError(
            f"train.photometric.channel_shuffle={settings.channel_shuffle} is a probability: give a value in [0, 1]"
        )


def enabled(settings: DictConfig) -> bool:
    return any(float(settings[k]) > 0 for k in ("brightness", "contrast", "saturation", "channel_shuffle"))


def jitter(pixels: np.ndarray, settings: DictConfig, rng: np.random.Generator) -> np.ndarray:
    """(n, H, W, 3) uint8 photos, each with its own random brightness, contrast, saturation and, with probability
    `channel_shuffle`, channel order (torchvision ColorJitter's blends, in that order), rounded back to uint8 so
    the model is fed exactly as at inference."""
    out = np.empty_like(pixels)
    for i, photo in enumerate(pixels):
        x = photo.astype(np.float32)
        if settings.brightness:
            x = _blend(x, 0.0, _factor(rng, settings.brightness))
        if settings.contrast:
            x = _blend(x, float((x @ _LUMA).mean()), _factor(rng, settings.contrast))
        if settings.saturation:
            x = _blend(x, (x @ _LUMA)[..., None], _factor(rng, settings.saturation))
        if settings.channel_shuffle and rng.random() < settings.channel_shuffle:
            x = x[..., rng.permutation(3)]
        out[i] = np.clip(np.rint(x), 0, 255)
    return out


def _factor(rng: np.random.Generator, spread: float) -> np.float32:
    return np.float32(rng.uniform(1.0 - spread, 1.0 + spread))


def _blend(x: np.ndarray, towards: np.ndarray | float, factor: np.float32) -> np.ndarray:
    """factor * x + (1 - factor) * towards: 1 leaves x, 0 gives `towards`, above 1 moves away from it."""
    return np.clip(factor * x + (1.0 - factor) * towards, 0.0, 255.0)
