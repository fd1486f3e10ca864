"""The one narrow interface every engine implements: build -> artifact on disk -> load -> infer a batch.

Stages only talk to `Engine` and `Session`; an engine is chosen by config (`_target_` in conf/engine/)
and declares what it can run, so adding one touches no stage code.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..budget import Budget
from ..errors import BudgetNotMet, PipelineError
from ..isa import Int8Isa

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
    # 7-bit weights against u8 x s8 saturation (isa.py): enable (every layer) | first_layer | disable, or auto
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


def budget_error(
    budget: float, best_drop: float, tried: int, metric: str = "mean", record: dict | None = None
) -> BudgetNotMet:
    """The one-line error of a missed budget; `record` (what was tried) goes into the failed job's result.json."""
    return BudgetNotMet(
        f"calibration.max_dice_drop={budget} not reached: the best of {tried} int8 configurations loses "
        f"{best_drop:.5f} Dice ({metric}) on the validation images; raise the budget, add calibration.keep_float "
        "layers, or use a float precision",
        record,
    )


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


def with_overflow_fix(engine: Engine, spec: BuildSpec, isa: Int8Isa) -> tuple[BuildSpec, OverflowChoice | None]:
    """`spec` with `calibration.overflow_fix` resolved for the CPU class `isa` (quantized precisions only), and
    the choice with its reason; every path to `Engine.build` goes through here, so no engine sees `auto`."""
    if not spec.precision.needs_calibration:
        return spec, None
    choice = engine.overflow_fix(spec, isa)
    return replace(spec, quant=replace(spec.quant, overflow_fix=choice.setting)), choice


def resolved_overflow_fix(quant: QuantOptions) -> str:
    """The quantizer's setting; `auto` here means a caller skipped `with_overflow_fix` (a bug, not user input)."""
    if quant.overflow_fix == "auto":
        raise ValueError("calibration.overflow_fix=auto reached the quantizer unresolved (use with_overflow_fix)")
    return quant.overflow_fix


@dataclass(frozen=True)
class Capabilities:
    """What an engine can run; checked before any work so an impossible job fails at once."""

    precisions: tuple[str, ...]
    shapes: tuple[str, ...]
    devices: tuple[str, ...]
    export_format: str  # which exporter in stages/export.py produces its input graph
    calibration_methods: tuple[str, ...] = ("default",)  # calibration.method values it maps to its quantizer
    keep_float: bool = False  # can leave chosen compute layers in float (calibration.keep_float)
    native_accuracy_control: bool = False  # has its own accuracy-aware quantization (else the generic search)
    overflow_fixes: tuple[str, ...] = ("auto", "disable")  # calibration.overflow_fix values it can honour
    bias_corrections: tuple[str, ...] = ("default", "none")  # calibration.bias_correction values (default: its own)


def cyclic_batch(images: list[np.ndarray], start: int, batch: int) -> np.ndarray:
    """`batch` calibration images from `start`, wrapping to the beginning: repeats move no min/max range."""
    return np.stack([images[(start + k) % len(images)] for k in range(batch)])


class Validator(Protocol):
    """Held-apart (input, mask) pairs and per-image Dice of a loaded artifact on them (or on some of them):
    what accuracy-aware quantization measures the drop on (stages/quantize.py: ValidationSet)."""

    items: list[tuple[np.ndarray, np.ndarray]]

    def dice(self, session: Session, items: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[float]: ...


class Session(ABC):
    """A loaded artifact, ready to run batches."""

    supports_async: ClassVar[bool] = False

    def run_async(
        self, batch: np.ndarray, requests: int, budget: Budget, on_call: Callable[[], object] | None = None
    ) -> tuple[int, float]:
        """Keep `requests` inferences in flight while `budget.more(finished, seconds, in_flight)`, calling `on_call`
        after each start; (calls started, seconds) once all have finished."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous inference")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """A batch as `BuildSpec.input_shape` says ((N, C, H, W) float32 in [0, 1], or (N, H, W, C) uint8)
        -> (N, classes, H, W) logits."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What really runs (precision as compiled, threads, ...), recorded in result.json."""


class Engine(ABC):
    """Builds artifacts from exported graphs and loads them."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @abstractmethod
    def version(self) -> str:
        """Library version, part of the artifact's identity."""

    def settings(self) -> dict[str, Any]:
        """The engine options as configured (recorded in result.json)."""
        return {}

    def plan(self, spec: BuildSpec) -> dict[str, Any]:
        """What `build` would do for this request, without doing it (written by `dry_run=true`)."""
        low, high = spec.batch_dims
        return {
            "engine": self.name,
            "settings": self.settings(),
            "export_format": self.capabilities.export_format,
            "input_shape": [f"{low}..{high}" if low != high else low, *spec.input_shape(1)[1:]],
            "input_format": spec.input_format,
            "precision": spec.precision.mode,
        }

    def vendor_benchmark(self, artifact: Path, spec: BuildSpec, seconds: float) -> tuple[list[str], Any] | None:
        """(command, output parser) of the engine vendor's own benchmark tool on this artifact, if it has one."""
        return None

    def require_runtime(self) -> None:  # noqa: B027 - a hook: most engines' libraries are dependencies
        """Fail in one line when the engine's library cannot run here (dry runs skip this)."""

    def precision_fallback(self, spec: BuildSpec) -> str | None:
        """One line saying what would run instead when the device lacks the requested float type."""
        return None

    def check(self, spec: BuildSpec) -> None:
        """Refuse, in one line, a request this engine cannot honour (before any expensive work)."""
        caps = self.capabilities
        for what, value, allowed in (
            ("precision", spec.precision.mode, caps.precisions),
            ("shape", spec.shape, caps.shapes),
            ("device", spec.device, caps.devices),
        ):
            if value not in allowed:
                raise PipelineError(
                    f"engine={self.name} does not support {what}={value}; supported: {', '.join(allowed)}"
                )
        if spec.precision.needs_calibration:
            self.check_quant(spec.quant)

    def check_quant(self, quant: QuantOptions) -> None:
        """Refuse calibration options this engine's quantizer has no counterpart for."""
        caps = self.capabilities
        if quant.method not in caps.calibration_methods:
            raise PipelineError(
                f"engine={self.name} has no calibration.method={quant.method}; "
                f"supported: {', '.join(caps.calibration_methods)}"
            )
        if quant.keep_float and not caps.keep_float:
            raise PipelineError(f"engine={self.name} cannot keep chosen layers in float; remove calibration.keep_float")
        if quant.overflow_fix not in caps.overflow_fixes:
            raise PipelineError(
                f"engine={self.name} has no calibration.overflow_fix={quant.overflow_fix}; "
                f"supported: {', '.join(caps.overflow_fixes)}"
            )
        if quant.bias_correction not in caps.bias_corrections:
            raise PipelineError(
                f"engine={self.name} has no calibration.bias_correction={quant.bias_correction}; "
                f"supported: {', '.join(caps.bias_corrections)}"
            )

    def overflow_fix(self, spec: BuildSpec, isa: Int8Isa) -> OverflowChoice:
        """How this build guards against u8 x s8 saturation on a CPU of class `isa`: as configured, or, for
        `calibration.overflow_fix=auto`, what `auto_overflow_fix` picks (each engine knows its kernels)."""
        requested = spec.quant.overflow_fix
        if requested == "auto":
            return self.auto_overflow_fix(spec, isa)
        risk = ""
        if requested != "enable" and spec.device == "cpu" and isa.saturates:
            risk = f", although this CPU needs 7-bit weights ({isa.describe()})"
        return OverflowChoice(requested, f"as configured (calibration.overflow_fix={requested}){risk}")

    def auto_overflow_fix(self, spec: BuildSpec, isa: Int8Isa) -> OverflowChoice:
        """The default, for engines whose int8 does not run on the host CPU's instructions (MagicMind on an
        MLU): nothing to fix. Engines that run int8 on the CPU override it."""
        return OverflowChoice("disable", f"int8 runs on the {spec.device} device, not on this CPU's int8 instructions")

    def compute_layers(self, graph: Path, spec: BuildSpec) -> list[str]:
        """Names of the convolution-like layers of an exported graph, in graph order (for keep_float)."""
        raise NotImplementedError(f"engine={self.name} does not list its compute layers")

    def build_within_drop(
        self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray], validation: Validator, out_dir: Path
    ) -> tuple[Path, dict[str, Any]]:
        """Accuracy-aware quantization with the engine's own tool (capabilities.native_accuracy_control)."""
        raise NotImplementedError(f"engine={self.name} has no accuracy-aware quantization of its own")

    @abstractmethod
    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        """Compile `graph` (and quantize with `calibration` images, CHW float32) into an artifact in out_dir."""

    @abstractmethod
    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        """Load an artifact written by `build` (like MagicMind's offline model file)."""
