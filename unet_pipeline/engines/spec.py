"""What an engine is asked to build: `BuildSpec` (precision, shape, batch, input), `Precision` (MagicMind's modes
split into int bits and float type) and `QuantOptions` (the engine-facing calibration settings).

Everything here is plain data, so a plan, a cache key and a test can be made from it without any engine library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from unet_pipeline.core import PipelineError

_MODE = re.compile(r"^(?:force_(?P<force>\w+)|qint(?P<bits>\d+)_mixed_(?P<mixed>\w+))$")


@dataclass(frozen=True)
class Precision:
    """A MagicMind precision mode split into its parts: `qint8_mixed_float16` -> int8 + float16."""

    mode: str

    @property
    def _parts(self) -> re.Match:
        match = _MODE.match(self.mode)
        if match is None:
            raise ValueError(f"not a precision mode: {self.mode}")
        return match

    @property
    def quant_bits(self) -> int | None:
        """8 or 16 for quantized modes, None for pure floating point."""
        bits = self._parts.group("bits")
        return int(bits) if bits else None

    @property
    def float_type(self) -> str:
        """The floating-point type of everything not quantized: float32 | float16 | bfloat16."""
        parts = self._parts
        return parts.group("force") or parts.group("mixed")

    @property
    def needs_calibration(self) -> bool:
        return self.quant_bits is not None


@dataclass(frozen=True)
class QuantOptions:
    """How a quantized precision is calibrated: the `calibration` group minus which images.

    `default` values leave the choice to the engine's own recommended setting (recorded in the plan).
    """

    method: str = "default"  # statistics: default | minmax | mean_minmax | percentile | entropy | histogram | eqnm
    percentile: float = 99.999  # method=percentile: the kept share of each activation's values, in %
    weights: str = "per_channel"  # per_channel | per_tensor weight scales
    activations: str = "default"  # default | symmetric | asymmetric activation ranges
    keep_float: tuple[str, ...] = ()  # compute layers left in float: names, positions (0, -1) or first/last
    max_dice_drop: float | None = None  # accuracy-aware quantization budget (absolute Dice on validation images)
    drop_metric: str = "mean"  # what the budget bounds: mean | worst_image (the largest single-image drop)
    # 7-bit weights against u8 x s8 saturation (core/isa.py): enable (every layer) | first_layer | disable, or auto
    # until `Engine.overflow_fix` resolves it for the CPU the artifact is built for
    overflow_fix: str = "auto"
    # after calibration, biases re-fitted to undo int8's shift of each layer's mean output: default (the
    # engine's own) | fast (from each layer's own output) | full (through the quantized layers before it) | none
    bias_correction: str = "default"


def resolve_layers(ordered: list[str], wanted: tuple[str, ...]) -> list[str]:
    """Names of the compute layers `wanted` names by name, by position in graph order (0, -1) or first/last.

    Why positions: layer names differ between exporters and engines, "the first and last convolution" does not.
    """
    aliases = {"first": "0", "last": "-1"}
    resolved: list[str] = []
    for entry in wanted:
        key = aliases.get(str(entry), str(entry))
        if key.lstrip("-").isdigit():
            index = int(key)
            if not -len(ordered) <= index < len(ordered):
                raise PipelineError(
                    f"calibration.keep_float: position {entry} is outside the {len(ordered)} compute layers "
                    f"(0..{len(ordered) - 1}, or -1 for the last)"
                )
            name = ordered[index]
        elif key in ordered:
            name = key
        else:
            shown = ", ".join([*ordered[:4], "...", *ordered[-2:]]) if len(ordered) > 6 else ", ".join(ordered)
            raise PipelineError(
                f"calibration.keep_float: no compute layer named '{entry}'; use a position (0, 1, -1, first, last) "
                f"or one of the {len(ordered)} names ({shown}; `dry_run=true` lists them all)"
            )
        if name not in resolved:
            resolved.append(name)
    return resolved


@dataclass(frozen=True)
class OverflowChoice:
    """How an int8 build guards against u8 x s8 saturation, and why (recorded in result.json -> quantization)."""

    setting: str  # enable (7-bit weights in every layer) | first_layer | disable
    why: str


@dataclass(frozen=True)
class BuildSpec:
    """Everything besides the exported graph and the calibration images that determines an artifact."""

    precision: Precision
    shape: str  # static | dynamic
    batch: int
    batch_range: tuple[int, int] | None  # (min, max) for dynamic shapes
    input_hw: tuple[int, int]
    channels: int
    device: str  # device kind: cpu | cuda | mlu
    # float_nchw: float32 [0,1] NCHW; uint8_nhwc: raw pixels, /255 and layout in the model
    input_format: str = "float_nchw"
    quant: QuantOptions = QuantOptions()  # read only by quantized precisions

    @property
    def uint8_nhwc(self) -> bool:
        return self.input_format == "uint8_nhwc"

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        """What the host feeds: (N, C, H, W) float32, or (N, H, W, C) uint8 with normalization in the model."""
        h, w = self.input_hw
        return (batch, h, w, self.channels) if self.uint8_nhwc else (batch, self.channels, h, w)

    def zeros(self, batch: int) -> np.ndarray:
        """An input batch of zeros in the fed shape and dtype (warm-up, benchmarks of random weights)."""
        return np.zeros(self.input_shape(batch), np.uint8 if self.uint8_nhwc else np.float32)

    @property
    def batch_dims(self) -> tuple[int, int]:
        """(min, max) batch the artifact accepts."""
        return self.batch_range if self.shape == "dynamic" else (self.batch, self.batch)

    @property
    def build_batch(self) -> int:
        """The batch an artifact is traced, built and calibrated at.

        Static: the batch itself. Dynamic: the range's minimum (the sample's `--input_dims 1 ...`), so one
        dynamic artifact serves every batch in its range and a batch sweep builds it once.
        """
        return self.batch_dims[0]

    def artifact_identity(self) -> dict[str, object]:
        """The shape facts an artifact depends on (the run batch of a dynamic artifact is not one)."""
        return {
            "shape": self.shape,
            "batch_dims": list(self.batch_dims),
            "channels": self.channels,
            "input_hw": list(self.input_hw),
            "input_format": self.input_format,
        }


def resolved_overflow_fix(quant: QuantOptions) -> str:
    """The quantizer's setting; `auto` here means a caller skipped `with_overflow_fix` (a bug, not user input)."""
    if quant.overflow_fix == "auto":
        raise ValueError("calibration.overflow_fix=auto reached the quantizer unresolved (use with_overflow_fix)")
    return quant.overflow_fix


def cyclic_batch(images: list[np.ndarray], start: int, batch: int) -> np.ndarray:
    """`batch` calibration images from `start`, wrapping to the beginning: repeats move no min/max range."""
    return np.stack([images[(start + k) % len(images)] for k in range(batch)])
