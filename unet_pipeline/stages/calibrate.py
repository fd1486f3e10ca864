"""Calibration inputs: the drawn images, preprocessed exactly like inference inputs."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data import Sample, load_input
from .evaluate import load_usable


def load_calibration(
    samples: list[Sample],
    hw: tuple[int, int],
    progress: bool,
    skip_bad: bool,
    skipped: list[dict[str, str]],
    reduced: bool = False,
) -> list[np.ndarray]:
    """CHW float32 arrays for the engine's quantizer; bad images fail or are skipped like evaluation's."""
    bar = tqdm(samples, desc="calibration images", disable=not progress)
    return load_usable(bar, lambda s: load_input(s, hw, reduced), skip_bad, skipped)
