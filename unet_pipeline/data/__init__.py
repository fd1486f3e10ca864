"""Data: Carvana-layout datasets (listing, the car-disjoint split, calibration and validation draws), decoding,
and the model's preprocessing contract; the input cache and the synthetic demo set."""

from unet_pipeline.data.images import read_image, read_mask, resize_mask
from unet_pipeline.data.input_cache import InputCache, MaskSummary, SourceMask
from unet_pipeline.data.preprocessing import (
    DEFAULT_PREP,
    Preprocessing,
    input_hw,
    load_input,
    load_pair,
    load_pair_full,
    read_input,
    read_pixels,
    to_model_input,
)
from unet_pipeline.data.samples import (
    Sample,
    car_id,
    held_out_cars,
    list_samples,
    require_root,
    select_calibration,
    select_eval,
    select_validation,
)
from unet_pipeline.data.synthetic import ensure_configured, is_generated, plan_data

__all__ = [
    "DEFAULT_PREP",
    "InputCache",
    "MaskSummary",
    "Preprocessing",
    "Sample",
    "SourceMask",
    "car_id",
    "ensure_configured",
    "held_out_cars",
    "input_hw",
    "is_generated",
    "list_samples",
    "load_input",
    "load_pair",
    "load_pair_full",
    "plan_data",
    "read_image",
    "read_input",
    "read_mask",
    "read_pixels",
    "require_root",
    "resize_mask",
    "select_calibration",
    "select_eval",
    "select_validation",
    "to_model_input",
]
