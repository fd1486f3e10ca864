"""Quantizer inputs: calibration images and accuracy-control validation pairs, preprocessed like inference."""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from unet_pipeline.data import DEFAULT_PREP, Preprocessing, Sample, load_input, load_pair
from unet_pipeline.deploy.stages.evaluate import load_usable
from unet_pipeline.engines import BuildSpec


def load_quantizer_data(
    samples: list[Sample],
    spec: BuildSpec,
    progress: bool,
    skip_bad: bool,
    skipped: list[dict[str, str]],
    prep: Preprocessing = DEFAULT_PREP,
    masks: bool = False,
) -> list[Any]:
    """Single inputs as the engine is fed them (`BuildSpec.input_shape` without the batch) for calibration, or
    with `masks` (input, mask) pairs for accuracy control; bad images fail or are skipped like evaluation's."""
    load = load_pair if masks else load_input
    bar = tqdm(samples, desc="validation images" if masks else "calibration images", disable=not progress)
    return load_usable(bar, lambda s: load(s, spec.input_hw, prep, spec.uint8_nhwc), skip_bad, skipped)
