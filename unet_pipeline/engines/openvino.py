"""OpenVINO on CPU: float precisions by INFERENCE_PRECISION_HINT, int8 by NNCF post-training quantization.

The artifact is the compiled model exported as a blob (`CompiledModel.export_model`) and re-imported for
inference, the OpenVINO counterpart of MagicMind's offline model file. The quantized IR is kept beside it
for inspection.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PipelineError
from .base import BuildSpec, Capabilities, Engine, Precision, Session

# MagicMind float type -> OpenVINO inference precision hint, and the CPU capability that runs it natively.
_HINTS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_NATIVE_CAPABILITY = {"f32": "FP32", "f16": "FP16", "bf16": "BF16"}
_TYPE_NAMES = {
    "f32": "float32",
    "f16": "float16",
    "bf16": "bfloat16",
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
}
_COMPUTE_LAYERS = {"Convolution", "Deconvolution", "FullyConnected", "MatMul"}
_INT_PRECISIONS = {"i8", "u8"}
BLOB, IR, META = "model.blob", "model.xml", "build.json"


def _type_name(ov_type: Any) -> str:
    """'<Type: float32>' / 'bf16' -> 'float32' / 'bfloat16'."""
    text = getattr(ov_type, "to_string", lambda: str(ov_type))()
    return _TYPE_NAMES.get(text, text)


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
        if wanted in native:
            return None
        return (
            f"this CPU has no native {wanted} for OpenVINO (capabilities: {', '.join(sorted(native))}), "
            "so it would run float32"
        )

    def plan(self, spec: BuildSpec) -> dict[str, Any]:
        plan = super().plan(spec)
        plan["compile_config"] = self._compile_config(spec.precision.float_type)
        if spec.precision.quant_bits == 8:
            plan["quantization"] = {
                "tool": "nncf.quantize",
                "calibration_batch_shape": [1, spec.channels, *spec.input_hw],
            }
        return plan

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

    def _quantize(self, model, calibration: list[np.ndarray]):
        """NNCF post-training int8 on single-image batches, whatever batch the artifact has.

        Calibrating at batch 1 makes the statistics independent of the configured batch; the graph is
        reshaped back afterwards.
        """
        import nncf

        if not calibration:
            raise PipelineError("int8 needs calibration images: set calibration.num_samples > 0")
        shape = model.input(0).get_partial_shape()
        model.reshape([-1, *[d.get_length() for d in list(shape)[1:]]])
        dataset = nncf.Dataset(calibration, lambda image: image[None])
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
        quantized.reshape(shape)
        return quantized

    def build(self, graph: Path, spec: BuildSpec, calibration: list[np.ndarray] | None, out_dir: Path) -> Path:
        model = self._core.read_model(str(graph))
        precision: Precision = spec.precision
        if precision.quant_bits == 8:
            model = self._quantize(model, calibration or [])
        compiled = self._core.compile_model(model, "CPU", self._compile_config(precision.float_type))
        blob = compiled.export_model()
        blob = blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._ov.save_model(model, str(out_dir / IR), compress_to_fp16=False)
        (out_dir / BLOB).write_bytes(blob)
        (out_dir / META).write_text(
            json.dumps({"config": self._compile_config(precision.float_type), "openvino": self.version()}, indent=2)
        )
        return out_dir / BLOB

    def vendor_benchmark(self, artifact: Path, spec: BuildSpec, seconds: float):
        """OpenVINO's benchmark_app on the same model with the same compile properties, synchronous.

        It gets the IR saved beside the blob: benchmark_app 2026.4 refuses every .blob (it tests its
        precision options' None defaults against "").
        """
        config = json.loads((artifact.parent / META).read_text())["config"]
        shape = "input[" + ",".join(map(str, spec.input_shape(spec.batch))) + "]"
        command = [
            "benchmark_app",
            "-m",
            str(artifact.parent / IR),
            "-d",
            "CPU",
            "-api",
            "sync",
            "-t",
            str(max(1, round(seconds))),
            "-hint",
            config["PERFORMANCE_HINT"].lower(),
            "-infer_precision",
            config["INFERENCE_PRECISION_HINT"],
            "-data_shape" if spec.shape == "dynamic" else "-shape",
            shape,
        ]
        return command, parse_benchmark_app

    def load(self, artifact: Path, spec: BuildSpec) -> Session:
        meta = json.loads((artifact.parent / META).read_text())
        compiled = self._core.import_model(artifact.read_bytes(), "CPU", meta["config"])
        return OpenVINOSession(compiled)


_TO_MS = {"ms": 1.0, "us": 1e-3, "s": 1e3}


def parse_benchmark_app(output: str) -> dict[str, Any]:
    """Throughput and latencies (in ms, whatever unit benchmark_app chose: it prints us for fast models)."""
    found: dict[str, Any] = {}
    match = re.search(r"Throughput:\s+([\d.]+)\s*FPS", output)
    found["throughput_ips"] = float(match.group(1)) if match else None
    for key, label in (
        ("latency_ms_p50", "Median"),
        ("latency_ms_mean", "Average"),
        ("latency_ms_min", "Min"),
        ("latency_ms_max", "Max"),
    ):
        match = re.search(rf"{label}:\s+([\d.]+)\s*(ms|us|s)\b", output)
        found[key] = float(match.group(1)) * _TO_MS[match.group(2)] if match else None
    return found


class OpenVINOSession(Session):
    supports_async = True

    def __init__(self, compiled):
        self._compiled = compiled
        self._request = compiled.create_infer_request()

    def run_async(self, batch: np.ndarray, requests: int, min_iterations: int, min_seconds: float) -> tuple[int, float]:
        import openvino as ov

        queue = ov.AsyncInferQueue(self._compiled, requests)
        count, start = 0, time.perf_counter()
        while count < min_iterations or time.perf_counter() - start < min_seconds:
            queue.start_async({0: batch})  # blocks while all requests are busy
            count += 1
        queue.wait_all()
        return count, time.perf_counter() - start

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch})
        return self._request.get_output_tensor(0).data.copy()

    def describe(self) -> dict[str, Any]:
        compiled = self._compiled
        layers: Counter[str] = Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) in _COMPUTE_LAYERS:
                layers[info["runtimePrecision"].astype(str)] += 1
        total = sum(layers.values())
        int8 = sum(n for p, n in layers.items() if p in _INT_PRECISIONS)
        return {
            "inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
            "quantized_layer_share": round(int8 / total, 4) if total else None,
            "compute_layers_by_precision": dict(layers),
            "num_streams": int(compiled.get_property("NUM_STREAMS")),
            "num_threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "input_shape": str(compiled.input(0).get_partial_shape()),
        }
