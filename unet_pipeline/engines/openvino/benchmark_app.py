"""OpenVINO's own `benchmark_app` on our artifact: its command, and its figures parsed from its output (in ms,
whatever unit it printed), for `benchmark.vendor_tool=true`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from unet_pipeline.engines.spec import BuildSpec

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


def benchmark_app_command(
    ir: Path, config: dict[str, Any], spec: BuildSpec, seconds: float, requests: int = 1
) -> list[str]:
    """benchmark_app on the IR saved beside the blob, with the artifact's compile properties, for `seconds`
    (benchmark_app 2026.4 refuses every .blob: it tests its precision options' None defaults against ""):
    synchronous under the LATENCY hint, `requests` async requests under THROUGHPUT, as our figures are."""
    shape = "input[" + ",".join(map(str, spec.input_shape(spec.batch))) + "]"
    throughput = config["PERFORMANCE_HINT"].upper() == "THROUGHPUT" and requests > 1
    api = ["-api", "async", "-nireq", str(requests)] if throughput else ["-api", "sync"]
    return [
        "benchmark_app",
        "-m",
        str(ir),
        "-d",
        "CPU",
        *api,
        "-t",
        str(max(1, round(seconds))),
        "-hint",
        config["PERFORMANCE_HINT"].lower(),
        "-infer_precision",
        config["INFERENCE_PRECISION_HINT"],
        "-data_shape" if spec.shape == "dynamic" else "-shape",
        shape,
    ]
