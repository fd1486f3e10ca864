"""Calibration inputs: the drawn images, preprocessed exactly like inference inputs."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data import Sample, load_input, load_pair
from ..engines.base import BuildSpec
from .evaluate import load_usable


def load_calibration(
    samples: list[Sample],
    spec: BuildSpec,
    progress: bool,
    skip_bad: bool,
    skipped: list[dict[str, str]],
    reduced: bool = False,
) -> list[np.ndarray]:
    """Single inputs as the engine is fed them (`BuildSpec.input_shape` without the batch), for its quantizer;
    bad images fail or are skipped like evaluation's."""
    bar = tqdm(samples, desc="calibration images", disable=not progress)
    return load_usable(bar, lambda s: load_input(s, spec.input_hw, reduced, spec.uint8_nhwc), skip_bad, skipped)


def load_validation(
    samples: list[Sample],
    spec: BuildSpec,
    progress: bool,
    skip_bad: bool,
    skipped: list[dict[str, str]],
    reduced: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input, mask) pairs of the accuracy-control validation images, preprocessed like evaluation's."""
    bar = tqdm(samples, desc="validation images", disable=not progress)
    return load_usable(bar, lambda s: load_pair(s, spec.input_hw, reduced, spec.uint8_nhwc), skip_bad, skipped)
