"""What determines each artifact and each job: the parts hashed into cache keys and resume identities.

Kept in one place so that a reviewer can check, key by key, that nothing which changes an artifact is
missing (a wrong cache hit silently reports another model's figures) and that nothing which does not
change it is present (a needless miss costs a rebuild, nothing worse)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from unet_pipeline.core import file_sha256, package_version
from unet_pipeline.data import Preprocessing, Sample
from unet_pipeline.engines import BuildSpec, Engine

ARCHITECTURE = ("n_channels", "n_classes", "bilinear", "base_width", "align")
# The libraries that write each export format: a new exporter may write a different graph.
EXPORT_TOOLS = {
    "openvino_ir": ("torch", "openvino"),
    "onnx": ("torch", "onnx", "onnxscript"),
    "torch_export": ("torch",),
    "torchscript": ("torch",),
}


RANDOM_WEIGHTS = "random"  # model.checkpoint=random: seeded random weights, for speed-only runs


def weights_identity(checkpoint_sha256: str | None) -> str:
    """Weights by content (a renamed or copied file is the same weights); seeded random weights (no file) by name."""
    return f"sha256:{checkpoint_sha256}" if checkpoint_sha256 else f"{RANDOM_WEIGHTS}:seed0"


def export_parts(model_cfg: DictConfig, weights: str, spec: BuildSpec, export_format: str) -> dict[str, Any]:
    """An exported graph depends on the weights, the architecture, the input shape and the exporter."""
    return {
        "stage": "export",
        "format": export_format,
        "weights": weights,
        "architecture": {k: model_cfg[k] for k in ARCHITECTURE},
        "input": spec.artifact_identity(),
        "tools": {name: package_version(name) for name in EXPORT_TOOLS.get(export_format, ("torch",))},
    }


def engine_parts(
    export_key: str,
    engine: Engine,
    spec: BuildSpec,
    calibration_cfg: DictConfig,
    calibration_samples: list[Sample] | None,
    validation_samples: list[Sample] | None = None,
    int8_kind: str | None = None,
    prep: Preprocessing | None = None,
) -> dict[str, Any]:
    """A built artifact depends on its graph, the engine and its version and settings, precision and what the engine
    compiles it as, device, shape, and for quantized precisions on the calibration images (by content) and settings,
    with calibration.max_dice_drop on the validation images the drop is measured on, on the overflow fix as resolved
    (`auto` means different builds on different CPUs), on the CPU's int8 kernel class and on the quantizer settings
    the engine derives from all that (so a changed mapping of `default` is a miss), and on how the calibration
    images were decoded and resized (Preprocessing)."""
    plan = engine.plan(spec)
    calibration = None
    if calibration_samples is not None:
        settings = OmegaConf.to_container(calibration_cfg, resolve=True)
        settings.pop("root", None)  # where the images are does not matter, what they contain does
        if settings.get("max_dice_drop") is None:  # only accuracy-aware quantization reads these
            settings.pop("validation_samples", None)
            settings.pop("search_trials", None)
        calibration = {
            "settings": settings,
            "images": [file_sha256(s.image) for s in calibration_samples],
            "validation": [[file_sha256(s.image), file_sha256(s.mask)] for s in validation_samples or []],
            "overflow_fix": spec.quant.overflow_fix,
            "int8_kind": int8_kind,
            "preprocessing": (prep or Preprocessing()).key(),  # the calibration images as the engine saw them
            # the engine's own quantizer settings as it maps ours (OpenVINO, ONNX Runtime; MagicMind's plan has
            # none under this name: its calibration settings above decide it)
            "quantizer": plan.quantization,
        }
    return {
        "stage": "engine",
        "export": export_key,
        "engine": engine.name,
        "engine_version": engine.version(),
        "settings": engine.settings(),
        "precision": spec.precision.mode,
        # what the engine compiles it as (OpenVINO: the inference precision, which can depend on the CPU)
        "compile_config": plan.compile_config,
        "device": spec.device,
        "input": spec.artifact_identity(),
        "calibration": calibration,
    }
