"""Calibration inputs: the drawn images, preprocessed exactly like inference inputs."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data import Sample, load_input


def load_calibration(samples: list[Sample], hw: tuple[int, int], progress: bool) -> list[np.ndarray]:
    """CHW float32 arrays for the engine's quantizer."""
    return [load_input(s, hw) for s in tqdm(samples, desc="calibration images", disable=not progress)]
