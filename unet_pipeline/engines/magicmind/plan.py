"""MagicMind build plan and calibration data: everything that decides what gets built, with no SDK.

Mirrors what Cambricon's UNet sample (`gen_model/run.sh` -> `python_common/model_process.py`) hands the
builder, fragment by fragment, so a plan can be reviewed (`dry_run=true`) and tested anywhere. Two of the
sample's defects are deliberately not reproduced: several archs are concatenated there without a comma, and
its calibration images are divided by 255 although /255 is also folded into the model
(`insert_bn_before_firstnode` var 65025); here calibration data goes through the same host transform as
inference inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from unet_pipeline.engines.spec import BuildSpec, cyclic_batch

PIXEL_MAX = 255.0
# calibration.method -> MagicMind QuantizationAlgorithm (the sample's --calibration_algo linear | eqnm)
QUANT_ALGORITHMS = {"default": "LINEAR_ALGORITHM", "minmax": "LINEAR_ALGORITHM", "eqnm": "EQNM_ALGORITHM"}
GRANULARITIES = {"per_channel": "per_axis", "per_tensor": "per_tensor"}  # calibration.weights -> MagicMind
PREFERENCES = ("auto", "fast", "high_precision")


@dataclass(frozen=True)
class MagicMindSettings:
    """The engine config (conf/engine/magicmind.yaml) plus the device's arch and clusters."""

    arch: str = "mtp_372"
    cluster_num: tuple[int, ...] = (2, 6, 8)
    device_id: int = 0
    fold_normalization: bool = True
    input_layout: str = "NCHW"
    computation_preference: str = "auto"
    type64to32_conversion: bool = True
    conv_scale_fold: bool = False
    user_json: dict[str, Any] | None = None


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Later fragments refine earlier ones key by key, as repeated parse_from_string calls do."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def input_dims(spec: BuildSpec, layout: str = "NCHW") -> list[int]:
    """Input dims as the sample sets them (`--input_dims ${batch_size} 3 H W`).

    NCHW for the parsed network; `layout="NHWC"` gives what the host feeds after convert_input_layout.
    """
    h, w = spec.input_hw
    return [spec.build_batch, h, w, spec.channels] if layout == "NHWC" else [spec.build_batch, spec.channels, h, w]


def builder_fragments(spec: BuildSpec, settings: MagicMindSettings) -> list[dict[str, Any]]:
    """The BuilderConfig JSON fragments, in the order model_process.py passes them to parse_from_string."""
    precision = spec.precision.mode
    h, w = spec.input_hw
    fragments: list[dict[str, Any]] = [{"precision_config": {"precision_mode": precision}}]
    if spec.precision.quant_bits is not None:
        activations = "asymmetric" if spec.quant.activations == "asymmetric" else "symmetric"  # sample: symmetric
        fragments += [
            {"precision_config": {"weight_quant_granularity": GRANULARITIES[spec.quant.weights]}},
            {"precision_config": {"activation_quant_algo": activations}},
        ]
    fragments.append({"archs": [{settings.arch: list(settings.cluster_num)}]})
    if settings.fold_normalization:
        fragments.append(
            {
                "insert_bn_before_firstnode": {
                    "0": {"mean": [0.0] * spec.channels, "var": [PIXEL_MAX**2] * spec.channels}
                }
            }
        )
    dynamic = spec.shape == "dynamic"
    fragments.append({"graph_shape_mutable": dynamic})
    if dynamic:
        low, high = spec.batch_dims
        fragments.append({"dim_range": {"0": {"min": [low, spec.channels, h, w], "max": [high, spec.channels, h, w]}}})
    fragments += [
        {"computation_preference": settings.computation_preference},
        {"opt_config": {"type64to32_conversion": settings.type64to32_conversion}},
        {"opt_config": {"conv_scale_fold": settings.conv_scale_fold}},
    ]
    if settings.input_layout == "NHWC":
        fragments.append({"convert_input_layout": {"0": {"src": "NCHW", "dst": "NHWC"}}})
    if settings.user_json:
        fragments.append(dict(settings.user_json))  # the user's own JSON, merged last
    return fragments


def build_plan(spec: BuildSpec, settings: MagicMindSettings) -> dict[str, Any]:
    """Everything the builder needs: parser, input dims, BuilderConfig, calibration plan, host transform."""
    fragments = builder_fragments(spec, settings)
    merged: dict[str, Any] = {}
    for fragment in fragments:
        merged = deep_merge(merged, fragment)
    h, w = spec.input_hw
    plan: dict[str, Any] = {
        "parser": {
            "model_kind": "kPytorch",
            "graph": "TorchScript trace (torch.jit.trace)",
            "trace_input_shape": [spec.build_batch, spec.channels, h, w],
            "model_params": {"pytorch-input-dtypes": ["FLOAT32"]},
        },
        "input_dims": input_dims(spec),
        "mlu_archs": [settings.arch],
        "builder_config_fragments": fragments,
        "builder_config": merged,
        "host_input_transform": host_transform(settings),
        "device_id": settings.device_id,
    }
    if spec.precision.needs_calibration:
        plan["calibration"] = {
            "quantization_algorithm": QUANT_ALGORITHMS[spec.quant.method],
            "batch_shape": input_dims(spec, settings.input_layout),
            "data_type": "FLOAT32",
            "preprocessing": "exactly as inference inputs, host_input_transform included",
        }
    return plan


def host_transform(settings: MagicMindSettings) -> dict[str, Any]:
    """What the host does to a [0,1] NCHW batch before it reaches the model (and the calibrator)."""
    return {"scale": PIXEL_MAX if settings.fold_normalization else 1.0, "layout": settings.input_layout}


def to_engine_input(batch: np.ndarray, settings: MagicMindSettings) -> np.ndarray:
    """[0,1] NCHW float32 -> what the built model takes: 0-255 when /255 is folded in, NHWC if converted."""
    transform = host_transform(settings)
    x = batch * np.float32(transform["scale"]) if transform["scale"] != 1.0 else batch
    if transform["layout"] == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


class CalibrationFeed:
    """The CalibDataInterface protocol over preprocessed images, without the SDK.

    Batches of the network's input batch size; a short last batch is filled cyclically from the start
    (repeats do not move min/max or histogram ranges). `next()` returns False once all images were served.
    """

    def __init__(self, images: list[np.ndarray], batch: int, settings: MagicMindSettings):
        if not images:
            raise ValueError("calibration needs at least one image")
        self._images, self._batch, self._settings = images, batch, settings
        self._starts = list(range(0, len(images), batch))
        self._index = -1
        self._current: np.ndarray | None = None

    def shape(self) -> list[int]:
        c, h, w = self._images[0].shape
        return [self._batch, h, w, c] if self._settings.input_layout == "NHWC" else [self._batch, c, h, w]

    def next(self) -> bool:
        if self._index + 1 >= len(self._starts):
            return False
        self._index += 1
        start = self._starts[self._index]
        chunk = cyclic_batch(self._images, start, self._batch)
        self._current = to_engine_input(chunk, self._settings)
        return True

    def sample(self) -> np.ndarray:
        if self._current is None:
            raise RuntimeError("next() must succeed before sample()")
        return self._current

    def reset(self) -> None:
        self._index, self._current = -1, None

    def __len__(self) -> int:
        return len(self._starts)
