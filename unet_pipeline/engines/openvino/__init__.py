"""OpenVINO on the CPU: the engine (precision policy and build), NNCF quantization and accuracy control, the
session, and OpenVINO's own `benchmark_app`."""

from unet_pipeline.engines.openvino.benchmark_app import parse_benchmark_app
from unet_pipeline.engines.openvino.engine import OpenVINOEngine
from unet_pipeline.engines.openvino.session import OpenVINOSession

__all__ = ["OpenVINOEngine", "OpenVINOSession", "parse_benchmark_app"]
