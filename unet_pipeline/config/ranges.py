"""Numeric settings no stage could honour, refused in one line naming the key and its valid range before any work
(by the job, and by `preflight` before Hydra makes a dir).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from unet_pipeline.core import PipelineError

# (key, test, the valid range in words): numeric settings refused in one line before any work is done
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("model.scale", lambda v: 0 < v <= 1, "in (0, 1] (a share of the 1918x1280 frame; 0.5 -> 640x959)"),
    ("model.base_width", lambda v: v >= 1, "a positive integer"),
    ("model.align", lambda v: v >= 0, "0 (off) or a positive multiple to pad the input to, e.g. 32"),
    ("model.n_channels", lambda v: v >= 1, "a positive integer"),
    ("model.n_classes", lambda v: v >= 2, "2 or more (background + car)"),
    ("data.frame_width", lambda v: v >= 1, "a positive number of pixels"),
    ("data.frame_height", lambda v: v >= 1, "a positive number of pixels"),
    ("data.val_fraction", lambda v: 0 < v <= 1, "in (0, 1]: the share of cars held out for evaluation"),
    ("data.num_images", lambda v: v is None or v >= 1, "a positive integer, or null for all"),
    ("calibration.num_samples", lambda v: v >= 0, "0 or more"),
    ("calibration.validation_samples", lambda v: v >= 1, "a positive integer"),
    ("calibration.search_trials", lambda v: v >= 1, "a positive integer"),
    ("benchmark.warmup_iterations", lambda v: v >= 0, "0 or more"),
    ("benchmark.warmup_seconds", lambda v: v >= 0, "0 or more seconds"),
    ("benchmark.iterations", lambda v: v >= 1, "a positive integer"),
    ("benchmark.min_seconds", lambda v: v >= 0, "0 or more seconds"),
    ("benchmark.warmup_max_seconds", lambda v: v >= 0, "0 or more seconds"),
    ("benchmark.max_seconds", lambda v: v > 0, "a positive number of seconds (the cap on each measurement)"),
    ("benchmark.vendor_seconds", lambda v: v > 0, "a positive number of seconds"),
    ("benchmark.repeats", lambda v: v >= 1, "1 or more"),
    (
        "select.max_dice_drop",
        lambda v: v is None or 0 <= v < 1,
        "in [0, 1) (an absolute Dice drop, e.g. 0.0005), or null",
    ),
    ("select.max_image_drop", lambda v: v is None or 0 <= v < 1, "in [0, 1) (one image's Dice drop), or null"),
    ("select.min_throughput", lambda v: v is None or v > 0, "a positive number of images/s end to end, or null"),
    ("select.max_p99_ms", lambda v: v is None or v > 0, "a positive number of milliseconds, or null"),
    ("logger.timeout_s", lambda v: v > 0, "a positive number of seconds (per request to the tracking server)"),
    ("logger.retries", lambda v: 0 <= v <= 10, "0 to 10 (MLflow's limit)"),
)


def check_ranges(cfg: DictConfig, prefix: str = "") -> None:
    """Refuse, in one line naming the key and its valid range, a numeric setting no stage could honour (only the
    keys under `prefix`, e.g. "select.", where `cfg` holds only those)."""
    for key, valid, words in (r for r in _RANGES if r[0].startswith(prefix)):
        value = OmegaConf.select(cfg, key)
        if not valid(value):
            raise PipelineError(f"{key}={value} must be {words}")
