"""Config: the pipeline's structured schemas (typos fail at composition), the resolvers conf/ uses, the
numeric ranges checked before any work, and `--help`'s list of groups."""

from unet_pipeline.config.choices import PrecisionMode
from unet_pipeline.config.ranges import check_ranges
from unet_pipeline.config.registry import bundled_checkpoint, register_configs
from unet_pipeline.config.schema import DataConfig, ModelConfig, PipelineConfig, SelectConfig

__all__ = [
    "DataConfig",
    "ModelConfig",
    "PipelineConfig",
    "PrecisionMode",
    "SelectConfig",
    "bundled_checkpoint",
    "check_ranges",
    "register_configs",
]
