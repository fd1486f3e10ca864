"""Metrics: Dice as milesial's evaluate computes it (model and full resolution) and paired bootstrap intervals.

The milesial reference (`metrics.reference`, torch) is imported by name only where needed, so that reading
intervals never loads torch."""

from unet_pipeline.metrics import intervals
from unet_pipeline.metrics.dice import (
    dice_full,
    dice_of_batch,
    dice_of_logits,
    dice_per_image,
    predict_labels,
    upsampled_labels,
)
from unet_pipeline.metrics.intervals import Interval, distinguishable_front, paired_interval

__all__ = [
    "Interval",
    "dice_full",
    "dice_of_batch",
    "dice_of_logits",
    "dice_per_image",
    "distinguishable_front",
    "intervals",
    "paired_interval",
    "predict_labels",
    "upsampled_labels",
]
