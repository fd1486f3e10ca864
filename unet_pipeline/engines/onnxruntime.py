"""ONNX Runtime: fp32, fp16 (ONNX float16 conversion, CUDA only), int8 by `quantize_static` in QDQ format.

The artifact is the ONNX model ORT loads (quantized or converted as asked); graph optimisation happens at
session creation with the configured level, and the session settings are recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unet_pipeline.core import Int8Isa, PipelineError
from unet_pipeline.engines.base import Capabilities, Engine, EnginePlan, Session
from unet_pipeline.engines.spec import BuildSpec, OverflowChoice, cyclic_batch, resolve_layers, resolved_overflow_fix

MODEL, META = "model.onnx", "build.json"
_OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
_COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
# calibration.method -> onnxruntime.quantization.CalibrationMethod. `default` is Percentile (calibration.percentile,
# 99.999 %), not ORT's MinMax: MinMax takes each range from the single most extreme of the calibration images, and
# with 7-bit weights (AVX2) that cost one held-out image 0.0013 Dice against 0.0004 (README, "int8 on every CPU").
_CALIBRATE_METHODS = {"default": "Percentile", "minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class _CalibrationReader:
    """Feeds the calibration images to `quantize_static`, batched to the model's input shape."""

    def __init__(self, images: list[np.ndarray], input_name: str, batch: int):
        stacks = [cyclic_batch(images, i, batch) for i in range(0, len(images), batch)]
        self._feeds = iter([{input_name: s} for s in stacks])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # part of CalibrationDataReader's protocol; one pass suffices for MinMax
        pass


def quantized_share(model_path: Path) -> float | None:
    """Share of convolution/matmul nodes whose weights come through a DequantizeLinear (QDQ int8)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    compute = [node for node in graph.node if node.op_type in _COMPUTE_OPS]
    if not compute:
        return None
    return round(sum(1 for node in compute if node.input[1] in dequantized) / len(compute), 4)


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"
    capabilities = Capabilities(
        precisions=("force_float32", "force_float16", "qint8_mixed_float32", "qint8_mixed_float16"),
        shapes=("static", "dynamic"),
        devices=("cpu", "cuda"),
        export_format="onnx",
        calibration_methods=tuple(_CALIBRATE_METHODS),
        keep_float=True,
        overflow_fixes=("auto", "enable", "disable"),  # reduce_range is all layers or none
    )

    def __init__(
        self,
        graph_optimization_level: str = "all",
        intra_op_num_threads: int | None = None,
        inter_op_num_threads: int | None = None,
        activation_type: str = "uint8",
    ):
        import onnxruntime as ort

        if graph_optimization_level not in _OPT_LEVELS:
            raise PipelineError(
                f"engine.graph_optimization_level={graph_optimization_level}; choose one of {', '.join(_OPT_LEVELS)}"
            )
        if activation_type not in ("uint8", "int8"):
            raise PipelineError(f"engine.activation_type={activation_type}; choose uint8 or int8")
        self._ort = ort
        self.graph_optimization_level = graph_optimization_level
        self.intra_op_num_threads = intra_op_num_threads
        self.inter_op_num_threads = inter_op_num_threads
        self.activation_type = activation_type

    def version(self) -> str:
        return self._ort.__version__

    def settings(self) -> dict[str, Any]:
        return {
            "graph_optimization_level": self.graph_optimization_level,
            "intra_op_num_threads": self.intra_op_num_threads,
            "inter_op_num_threads": self.inter_op_num_threads,
            "activation_type": self.activation_type,
        }

    def providers(self, device: str) -> list[str]:
        wanted = _PROVIDERS[device]
        if wanted not in self._ort.get_available_providers():
            raise PipelineError(
                f"device={device} needs ONNX Runtime's {wanted}, which this onnxruntime build lacks "
                "(install onnxruntime-gpu for CUDA) "
            )
        return [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]

    def check(self, spec: BuildSpec) -> None:
        super().check(spec)
        self.providers(spec.device)

    def precision_fallback(self, spec: BuildSpec) -> str | None:
        """float16 runs only as a whole-model conversion on CUDA; everything else computes in float32."""
        precision = spec.precision
        if precision.float_type == "float32":
            return None
        if precision.quant_bits is None and spec.device == "cuda":
            return None
        if precision.quant_bits is None:
            return "ONNX Runtime's CPU execution provider has no float16 convolutions, so it would run float32"
        return "ONNX Runtime's QDQ int8 model keeps its non-quantized part in float32"

    def auto_overflow_fix(self, spec: BuildSpec, isa: Int8Isa) -> OverflowChoice:
        """7-bit weights (`reduce_range=True`) where ORT's CPU U8S8 kernels use `vpmaddubsw` and saturate, as ORT's
        quantization guide advises; full 8-bit weights where VNNI/AMX accumulate in 32 bits, and on CUDA."""
        if spec.device != "cpu":
            return OverflowChoice("disable", f"ONNX Runtime's {spec.device} int8 kernels accumulate in 32 bits")
        if isa.saturates:
            return OverflowChoice("enable", f"reduce_range=True (7-bit weights): {isa.describe()}")
        return OverflowChoice("disable", f"reduce_range=False (8-bit weights): {isa.describe()}")

    def plan(self, spec: BuildSpec) -> EnginePlan:
        plan = super().plan(spec)
        plan.details["providers"] = [_PROVIDERS[spec.device]]
        if spec.precision.quant_bits == 8:
            batch = spec.build_batch
            plan.quantization = {
                "tool": "onnxruntime.quantization.quantize_static",
                "quant_format": "QDQ",
                **self._quantize_options(spec),
                "activation_type": self.activation_type,
                "weight_type": "int8",
                "nodes_to_exclude": list(spec.quant.keep_float),
                "max_dice_drop": spec.quant.max_dice_drop,
                "calibration_batch_shape": [batch, *spec.input_shape(1)[1:]],
            }
        return plan

    def _quantize_options(self, spec: BuildSpec) -> dict[str, Any]:
        """quantize_static's options for `spec.quant` (JSON-friendly: the calibrate method by name)."""
        quant = spec.quant
        extra: dict[str, Any] = {}
        if quant.activations != "default":
            extra["ActivationSymmetric"] = quant.activations == "symmetric"
        if _CALIBRATE_METHODS[quant.method] == "Percentile":
            extra["CalibPercentile"] = quant.percentile
        return {
            "calibrate_method": _CALIBRATE_METHODS[quant.method],
            "per_channel": quant.weights == "per_channel",
            "reduce_range": resolved_overflow_fix(quant) == "enable",
            "extra_options": extra,
        }

    def compute_layers(self, graph: Path, spec: BuildSpec) -> list[str]:
        import onnx

        nodes = onnx.load(str(graph), load_external_data=False).graph.node
        return [node.name for node in nodes if node.op_type in _COMPUTE_OPS]

    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        artifact = out_dir / MODEL
        precision = spec.precision
        if precision.quant_bits == 8:
            self._quantize(graph, spec, calibration or [], artifact)
        elif precision.float_type == "float16" and spec.device == "cuda":
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(str(graph)), keep_io_types=True), str(artifact))
        else:
            import onnx

            onnx.save(onnx.load(str(graph)), str(artifact))  # one self-contained file (the exporter may split weights)
        (out_dir / META).write_text(
            json.dumps(
                {"precision": precision.mode, "device": spec.device, "onnxruntime": self.version(), **self.settings()},
                indent=2,
            )
        )
        return artifact

    def _quantize(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray], artifact: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        if not calibration:
            raise PipelineError("int8 needs calibration images: set calibration.num_samples > 0")
        prepared = artifact.with_name("prepared.onnx")
        quant_pre_process(str(graph), str(prepared))  # shape inference + BN folding, as ORT recommends
        batch = spec.build_batch
        reader = _CalibrationReader(calibration, "input", batch)
        options = self._quantize_options(spec)
        quantize_static(
            str(prepared),
            str(artifact),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=options["per_channel"],
            reduce_range=options["reduce_range"],
            activation_type=QuantType.QUInt8 if self.activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, options["calibrate_method"]),
            nodes_to_exclude=resolve_layers(self.compute_layers(graph, spec), spec.quant.keep_float),
            extra_options=options["extra_options"],
        )
        prepared.unlink()

    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _OPT_LEVELS[self.graph_optimization_level]
        )
        if self.intra_op_num_threads:
            options.intra_op_num_threads = int(self.intra_op_num_threads)
        if self.inter_op_num_threads:
            options.inter_op_num_threads = int(self.inter_op_num_threads)
        session = ort.InferenceSession(str(artifact), options, providers=self.providers(spec.device))
        fp16 = spec.precision.quant_bits is None and spec.precision.float_type == "float16" and spec.device == "cuda"
        return OnnxRuntimeSession(session, artifact, "float16" if fp16 else "float32", self.settings())


class OnnxRuntimeSession(Session):
    def __init__(self, session, artifact: Path, float_type: str, settings: dict[str, Any]):
        self._session = session
        self._input = session.get_inputs()[0].name
        self._artifact = artifact
        self._float_type = float_type
        self._settings = settings

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: batch})[0]

    def describe(self) -> dict[str, Any]:
        return {
            "inference_precision": self._float_type,
            "quantized_layer_share": quantized_share(self._artifact),
            "providers": self._session.get_providers(),
            "input_shape": str(self._session.get_inputs()[0].shape),
            **self._settings,
        }
