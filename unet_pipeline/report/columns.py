"""TODO."""

from __future__ import annotations

import pandas as pd

# (column in the markdown table, flattened result.json key)
MD_COLUMNS = [
    ("job", "job_dir"),
    ("model", "job.model"),
    ("engine", "job.engine"),
    ("precision", "job.precision"),
    ("calibration", "calibration"),
    ("batch", "job.batch"),
    ("shape", "shape"),
    ("input", "input"),
    ("dice", "metrics.dice"),
    ("Δ dice vs fp32 [95 % CI]", "dice_delta_shown"),
    ("worst image Δ", "worst_image_delta_vs_fp32"),
    ("dice full res", "metrics.dice_full"),
    ("Δ full res [95 % CI]", "dice_full_delta_shown"),
    ("worst full-res Δ", "worst_image_full_delta_vs_fp32"),
    ("images", "metrics.num_images"),
    ("compiled as", "compiled_as"),
    ("p50 ms", "benchmark.engine.latency_ms.p50"),
    ("p99 ms", "benchmark.engine.latency_ms.p99"),
    ("img/s", "benchmark.engine.throughput_ips"),
    ("img/s over repeats", "throughput_spread"),
    ("img/s async", "benchmark.engine_async.throughput_ips"),
    ("img/s e2e", "benchmark.end_to_end.throughput_ips"),
    ("e2e / engine", "benchmark.end_to_end.vs_engine"),
    ("speed-up vs fp32", "speedup_vs_fp32"),
    ("status", "status"),
    ("error / notes", "remarks"),
]


def _compiled_as(row: pd.Series) -> str | None:
    """e.g. 'int8 83% + float32': what the engine really compiled."""
    ran = row.get("compiled.inference_precision")
    if not isinstance(ran, str):
        return None
    share = row.get("compiled.quantized_layer_share")
    if isinstance(share, float) and share > 0:
        return f"int8 {share:.0%} + {ran}"
    if str(row.get("job.precision", "")).startswith("qint") and not (isinstance(share, float) and share == 0):
        return f"{row['job.precision']} (unverified: engine reports no per-layer precision)"
    return ran


def _calibration(row: pd.Series) -> str | None:
    """e.g. '50 imgs · histogram · per_channel · act default · float [first, last] · drop≤0.001: 2 kept float'."""
    method = row.get("quantization.options.method")
    if not isinstance(method, str):
        return None
    images = row.get("data.calibration_images")
    parts = [
        f"{int(images) if pd.notna(images) else '?'} imgs",
        method if method != "percentile" else f"percentile {row.get('quantization.options.percentile')}",
        str(row.get("quantization.options.weights")),
        f"act {row.get('quantization.options.activations')}",
    ]
    bias = row.get("quantization.options.bias_correction")
    if isinstance(bias, str) and bias != "default":
        parts.append(f"bias corr. {bias}")
    keep = row.get("quantization.options.keep_float")
    if isinstance(keep, list) and keep:
        parts.append(f"float [{', '.join(map(str, keep))}]")
    drop = row.get("quantization.options.max_dice_drop")
    if pd.notna(drop):
        kept = row.get("quantization.accuracy_control.kept_float")
        parts.append(f"drop≤{drop:g}: {len(kept) if isinstance(kept, list) else '?'} kept float")
    overflow = row.get("quantization.overflow_fix.chosen")
    if isinstance(overflow, str):
        parts.append(f"{_WEIGHT_BITS.get(overflow, overflow)} ({_int8_target(row)})")
    return " · ".join(parts)


_WEIGHT_BITS = {"enable": "7-bit weights", "first_layer": "7-bit first layer", "disable": "8-bit weights"}


def _int8_target(row: pd.Series) -> str:
    """The host CPU's int8 class where int8 runs on it, else the device it runs on (cuda, mlu)."""
    runs_on = row.get("quantization.overflow_fix.runs_on")
    if isinstance(runs_on, str) and runs_on != "cpu":
        return runs_on
    return str(row.get("quantization.overflow_fix.cpu.int8_kind"))
