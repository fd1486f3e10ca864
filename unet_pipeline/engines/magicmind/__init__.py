"""MagicMind on Cambricon MLUs: the engine against its Python API, and the pure plan of what it would build."""

from unet_pipeline.engines.magicmind.engine import MagicMindEngine
from unet_pipeline.engines.magicmind.plan import MagicMindSettings, build_plan

__all__ = ["MagicMindEngine", "MagicMindSettings", "build_plan"]
