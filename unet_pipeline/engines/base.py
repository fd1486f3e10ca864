"""The one narrow interface every engine implements: build -> artifact on disk -> load -> infer a batch.

Stages only talk to `Engine` and `Session`; an engine is chosen by config (`_target_` in conf/engine/)
and declares what it can run, so adding one touches no stage code."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from unet_pipeline.core import BudgetNotMet, CallLimits, Int8Isa, PipelineError
from unet_pipeline.engines.spec import BuildSpec, OverflowChoice, QuantOptions


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


def with_overflow_fix(engine: Engine, spec: BuildSpec, isa: Int8Isa) -> tuple[BuildSpec, OverflowChoice | None]:
    """`spec` with `calibration.overflow_fix` resolved for the CPU class `isa` (quantized precisions only), and
    the choice with its reason; every path to `Engine.build` goes through here, so no engine sees `auto`."""
    if not spec.precision.needs_calibration:
        return spec, None
    choice = engine.overflow_fix(spec, isa)
    return replace(spec, quant=replace(spec.quant, overflow_fix=choice.setting)), choice


@dataclass
class EnginePlan:
    """What an engine would build for a request. `compile_config` and `quantization` are part of the artifact's
    cache key (how the engine compiles the float part, and its quantizer's settings as it maps ours: a changed
    mapping of `default` is a miss); `details` is what else the engine says (MagicMind's builder configuration,
    ONNX Runtime's providers), shown in plan.json only."""

    engine: str
    settings: dict[str, Any]
    export_format: str
    input_shape: list[Any]
    input_format: str
    precision: str
    compile_config: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """plan.json's `engine` section: the common keys, then what this engine adds."""
        fields = asdict(self)
        details = fields.pop("details")
        plan = {key: value for key, value in fields.items() if key not in ("compile_config", "quantization")}
        if self.compile_config is not None:
            plan["compile_config"] = self.compile_config
        plan.update(details)
        if self.quantization is not None:
            plan["quantization"] = self.quantization
        return plan


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


class Validator(Protocol):
    """Held-apart (input, mask) pairs and per-image Dice of a loaded artifact on them (or on some of them):
    what accuracy-aware quantization measures the drop on (stages/quantize.py: ValidationSet)."""

    items: list[tuple[np.ndarray, np.ndarray]]

    def dice(self, session: Session, items: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[float]: ...


class Session(ABC):
    """A loaded artifact, ready to run batches."""

    supports_async: ClassVar[bool] = False

    def run_async(
        self, batch: np.ndarray, requests: int, limits: CallLimits, on_call: Callable[[], object] | None = None
    ) -> tuple[int, float]:
        """Keep `requests` inferences in flight while `limits.more(finished, seconds, in_flight)`, calling `on_call`
        after each start; (calls started, seconds) once all have finished."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous inference")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """A batch as `BuildSpec.input_shape` says ((N, C, H, W) float32 in [0, 1], or (N, H, W, C) uint8)
        -> (N, classes, H, W) logits."""

    def infer_shared(self, batch: np.ndarray) -> np.ndarray:
        """`infer`, its logits possibly the engine's own output buffer: valid until the next call (no copy; 79 MB
        per call at 640x959 batch 16). For callers done with them before the next call: the timing loop, Dice."""
        return self.infer(batch)

    def start(self, batch: np.ndarray) -> None:
        """Queue a batch for `finish`, which returns the logits of the oldest queued batch. Engines that can run
        one batch while the caller scores the previous one start it now (OpenVINO: two requests in turn); the
        rest run it in `finish`. At most two batches are queued; `batch` must stay unchanged until finished."""
        self._queued = [*getattr(self, "_queued", []), batch]

    def finish(self) -> np.ndarray:
        """The logits of the oldest started batch (valid until the batch after next is started)."""
        batch, *self._queued = self._queued
        return self.infer_shared(batch)

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

    def plan(self, spec: BuildSpec) -> EnginePlan:
        """What `build` would do for this request, without doing it (plan.json of `dry_run=true`, and the parts of
        the artifact's cache key the engine derives); engines add their compile settings and quantizer."""
        low, high = spec.batch_dims
        return EnginePlan(
            engine=self.name,
            settings=self.settings(),
            export_format=self.capabilities.export_format,
            input_shape=[f"{low}..{high}" if low != high else low, *spec.input_shape(1)[1:]],
            input_format=spec.input_format,
            precision=spec.precision.mode,
        )

    def vendor_benchmark(
        self, artifact: Path, spec: BuildSpec, seconds: float, requests: int = 1
    ) -> tuple[list[str], Any] | None:
        """(command, output parser) of the engine vendor's own benchmark tool on this artifact, if it has one;
        `requests` in flight where the artifact was compiled for throughput (as our async figure)."""
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
