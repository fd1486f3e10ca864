"""OpenVINO on CPU: float precisions by INFERENCE_PRECISION_HINT, int8 by NNCF post-training quantization.

The artifact is the compiled model exported as a blob (`CompiledModel.export_model`) and re-imported for
inference, the OpenVINO counterpart of MagicMind's offline model file. The quantized IR is kept beside it
for inspection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unet_pipeline.core import Int8Isa, cpu_flags, slow_float16
from unet_pipeline.engines.base import Capabilities, Engine, EnginePlan, Session
from unet_pipeline.engines.openvino.benchmark_app import benchmark_app_command, parse_benchmark_app
from unet_pipeline.engines.openvino.quantizer import (
    GRAPH_COMPUTE_OPS,
    OVERFLOW_FIXES,
    RANGE_ESTIMATORS,
    quantization_plan,
    quantize,
    quantize_within_drop,
)
from unet_pipeline.engines.openvino.session import OpenVINOSession
from unet_pipeline.engines.spec import BuildSpec, OverflowChoice

# MagicMind float type -> OpenVINO inference precision hint, and the CPU capability that runs it natively.
_HINTS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_NATIVE_CAPABILITY = {"f32": "FP32", "f16": "FP16", "bf16": "BF16"}
BLOB, IR, META = "model.blob", "model.xml", "build.json"


class OpenVINOEngine(Engine):
    name = "openvino"
    capabilities = Capabilities(
        precisions=(
            "force_float32",
            "force_float16",
            "force_bfloat16",
            "qint8_mixed_float32",
            "qint8_mixed_float16",
            "qint8_mixed_bfloat16",
        ),
        shapes=("static", "dynamic"),
        devices=("cpu",),
        export_format="openvino_ir",
        calibration_methods=(*RANGE_ESTIMATORS, "percentile"),
        keep_float=True,
        native_accuracy_control=True,
        overflow_fixes=("auto", *OVERFLOW_FIXES),
        bias_corrections=("default", "fast", "full", "none"),
    )

    def __init__(
        self, performance_hint: str = "LATENCY", num_threads: int | None = None, num_streams: int | None = None
    ):
        import openvino as ov

        self._ov = ov
        self._core = ov.Core()
        self.performance_hint = performance_hint
        self.num_threads = num_threads
        self.num_streams = num_streams

    def version(self) -> str:
        return self._ov.get_version().split("-")[0]

    def settings(self) -> dict[str, Any]:
        return {
            "performance_hint": self.performance_hint,
            "num_threads": self.num_threads,
            "num_streams": self.num_streams,
        }

    def native_float_types(self) -> set[str]:
        """Float types this CPU runs natively; others the plugin silently runs in float32."""
        caps = set(self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        return {name for name, hint in _HINTS.items() if _NATIVE_CAPABILITY[hint] in caps}

    def precision_fallback(self, spec: BuildSpec) -> str | None:
        """Say what would run instead when the CPU lacks the requested float type, else None."""
        wanted = spec.precision.float_type
        native = self.native_float_types()
        if wanted not in native:
            # A float16 hint where the CPU has bf16 but no fp16 compiles as bfloat16 (seen on an AVX-512 BF16
            # EPYC: "compiled as bfloat16", 2.1x float32); the row's compiled type is checked either way.
            instead = "bfloat16" if wanted == "float16" and "bfloat16" in native else "float32"
            return (
                f"this CPU has no native {wanted} for OpenVINO (capabilities: {', '.join(sorted(native))}), "
                f"so it would run {instead}"
            )
        ran = self.float_type(spec)
        if ran != wanted:
            return (
                f"the float16 remainder of an int8 model runs as {ran}: this x86 CPU's float16 has no AMX-FP16 "
                "(AVX512-FP16 only), under which int8 ran at 0.2x float32 (measured on an AMX Xeon)"
            )
        return None

    def float_type(self, spec: BuildSpec) -> str:
        """The float type the model's float part is compiled as: the requested one, except an int8 model's
        float16 *remainder* on an x86 CPU without AMX-FP16, which runs float32: wider than asked, as where the
        CPU has no float16 at all. Measured on a 2-core AMX Xeon (AVX512-FP16, no AMX-FP16), the sample's int8
        IR with 4 layers in float: 0.88 img/s with an f16 remainder, 18.5 f32, 28.7 bf16 (float32 alone: 4.4);
        bf16 would be faster but narrower than what was asked. `force_float16` itself is the headline and runs
        float16 as asked."""
        wanted = spec.precision.float_type
        if spec.precision.quant_bits and wanted == "float16" and slow_float16(cpu_flags()):
            return "float32"
        return wanted

    def auto_overflow_fix(self, spec: BuildSpec, isa: Int8Isa) -> OverflowChoice:
        """NNCF's overflow fix in every layer where oneDNN's int8 convolutions saturate (AVX2 or AVX-512 without
        VNNI); elsewhere NNCF's own default (the first layer only), under which this project's VNNI-host int8
        figures were measured."""
        if isa.saturates:
            return OverflowChoice("enable", f"nncf OverflowFix.ENABLE (7-bit weights in every layer): {isa.describe()}")
        return OverflowChoice("first_layer", f"nncf OverflowFix.FIRST_LAYER (its default): {isa.describe()}")

    def plan(self, spec: BuildSpec) -> EnginePlan:
        plan = super().plan(spec)
        plan.compile_config = self._compile_config(self.float_type(spec))
        if spec.precision.quant_bits == 8:
            plan.quantization = quantization_plan(spec)
        return plan

    def compute_layers(self, graph: Path, spec: BuildSpec) -> list[str]:
        model = self._core.read_model(str(graph))
        return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in GRAPH_COMPUTE_OPS]

    def _compile_config(self, float_type: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _HINTS[float_type],
            "PERFORMANCE_HINT": self.performance_hint,
        }
        if self.num_threads:
            config["INFERENCE_NUM_THREADS"] = int(self.num_threads)
        if self.num_streams:
            config["NUM_STREAMS"] = int(self.num_streams)
        return config

    def _read_dynamic_batch(self, graph: Path):
        """The exported model with a free batch dimension (for calibration and validation), and its own shape."""
        model = self._core.read_model(str(graph))
        shape = model.input(0).get_partial_shape()
        model.reshape([-1, *[d.get_length() for d in list(shape)[1:]]])
        return model, shape

    def build_within_drop(self, graph, spec, calibration, validation, out_dir):
        """The int8 model within `calibration.max_dice_drop` (quantizer.quantize_within_drop), every candidate
        scored as it will run."""
        candidate_config = self._compile_config(self.float_type(spec))

        def score(model, config: dict[str, Any] = candidate_config) -> float:
            compiled = self._core.compile_model(model, "CPU", config)
            return float(np.mean(validation.dice(OpenVINOSession(compiled))))

        layers = self.compute_layers(graph, spec)  # graph order: names and positions of what gets reverted
        final, record = quantize_within_drop(
            lambda: self._read_dynamic_batch(graph), spec.quant, calibration, layers, validation, score, OpenVINOSession
        )
        return self._compile_and_save(final, spec, out_dir), record

    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        if spec.precision.quant_bits == 8:
            layers = self.compute_layers(graph, spec) if spec.quant.keep_float else []
            model = quantize(*self._read_dynamic_batch(graph), spec.quant, calibration or [], layers)
        else:
            model = self._core.read_model(str(graph))
        return self._compile_and_save(model, spec, out_dir)

    def _compile_and_save(self, model, spec: BuildSpec, out_dir: Path) -> Path:
        config = self._compile_config(self.float_type(spec))
        compiled = self._core.compile_model(model, "CPU", config)
        blob = compiled.export_model()
        blob = blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._ov.save_model(model, str(out_dir / IR), compress_to_fp16=False)
        (out_dir / BLOB).write_bytes(blob)
        (out_dir / META).write_text(json.dumps({"config": config, "openvino": self.version()}, indent=2))
        return out_dir / BLOB

    def vendor_benchmark(self, artifact: Path, spec: BuildSpec, seconds: float, requests: int = 1):
        """OpenVINO's benchmark_app on the same model with the same compile properties: synchronous under the
        LATENCY hint, `requests` asynchronous requests under THROUGHPUT (as our two figures).

        It gets the IR saved beside the blob: benchmark_app 2026.4 refuses every .blob (it tests its
        precision options' None defaults against "").
        """
        config = json.loads((artifact.parent / META).read_text())["config"]
        return benchmark_app_command(artifact.parent / IR, config, spec, seconds, requests), parse_benchmark_app

    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        meta = json.loads((artifact.parent / META).read_text())
        compiled = self._core.import_model(artifact.read_bytes(), "CPU", meta["config"])
        return OpenVINOSession(compiled)
