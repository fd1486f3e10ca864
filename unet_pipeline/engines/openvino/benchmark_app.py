"""TODO."""

from __future__ import annotations

import re
from typing import Any

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
