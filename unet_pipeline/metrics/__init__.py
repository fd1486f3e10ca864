"""Metrics: Dice as milesial's evaluate computes it (model and full resolution) and paired bootstrap intervals.

Full-resolution Dice has two forms with the same result: `dice_full` upsamples every frame (the reference),
`dice_full_exact` decides most frame pixels by cells (fullres.py), from masks kept as `FullTruth`.

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
from unet_pipeline.metrics.frame_grid import BlockCounts, FullTruth
from unet_pipeline.metrics.fullres import dice_full_exact, fast_upsampled_labels, warm_up
from unet_pipeline.metrics.intervals import Interval, distinguishable_front, paired_interval

__all__ = [
    "BlockCounts",
    "FullTruth",
    "Interval",
    "dice_full",
    "dice_full_exact",
    "dice_of_batch",
    "dice_of_logits",
    "dice_per_image",
    "distinguishable_front",
    "fast_upsampled_labels",
    "intervals",
    "paired_interval",
    "predict_labels",
    "upsampled_labels",
    "warm_up",
]
