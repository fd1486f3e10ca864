"""Model: milesial's UNet, its checkpoints (read, load, save in milesial's format), and the graph exported for
deployment (input alignment, uint8 NHWC input)."""

from unet_pipeline.model.checkpoint import (
    MASK_VALUES,
    build_unet,
    load_unet,
    read_checkpoint,
    save_checkpoint,
    save_milesial,
)
from unet_pipeline.model.deployment import AlignedInput, for_deployment, with_alignment
from unet_pipeline.model.unet import UNet

__all__ = [
    "MASK_VALUES",
    "AlignedInput",
    "UNet",
    "build_unet",
    "for_deployment",
    "load_unet",
    "read_checkpoint",
    "save_checkpoint",
    "save_milesial",
    "with_alignment",
]
