"""What one row of a results table becomes in MLflow: params (what the job asked for), metrics (every figure),
tags (status, error, machine, the sweep's verdicts), a run name, and the uid that finds the run again."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unet_pipeline.core import content_key
from unet_pipeline.report.columns import Col

# (param name, results-frame column): what the job asked for, its identity in a comparison across sweeps
PARAMS = (
    ("model", Col.MODEL), ("checkpoint", Col.CHECKPOINT), ("checkpoint_sha256", Col.CHECKPOINT_SHA256),
    ("precision", Col.PRECISION), ("batch", Col.BATCH), ("shape", Col.SHAPE), ("input", Col.INPUT),
    ("engine", Col.ENGINE), ("engine_version", Col.ENGINE_VERSION), ("device", Col.DEVICE),
    ("calibration", Col.CALIBRATION), ("resize", Col.RESIZE), ("decode", Col.DECODE), ("align", Col.ALIGN),
    ("input_format", Col.INPUT_FORMAT), ("workers", Col.WORKERS), ("prefetch_batches", Col.PREFETCH_BATCHES),
    ("data_root", Col.DATA_ROOT), ("data_split", Col.DATA_SPLIT), ("images", Col.NUM_IMAGES),
)  # fmt: skip
# metrics: every finite number under these column prefixes, plus the sweep's comparisons against fp32
METRIC_PREFIXES = ("metrics.", "timings.", "benchmark.engine.", "benchmark.engine_async.", "benchmark.end_to_end.")
METRIC_SKIP = ("batch", "requests", "images", "iterations", "warmup.", "budget.", "seconds")
SWEEP_METRICS = (
    Col.DICE_DELTA, "dice_delta_ci_low", "dice_delta_ci_high", "worst_image_delta_vs_fp32",
    "dice_full_delta_vs_fp32", "dice_full_delta_ci_low", "dice_full_delta_ci_high", "worst_image_full_delta_vs_fp32",
    Col.SPEEDUP, Col.INT8_SHARE,
)  # fmt: skip
SWEEP_TAGS = (Col.DICE_DELTA_DISTINGUISHABLE, Col.DICE_FULL_DELTA_DISTINGUISHABLE, Col.WARNING, Col.COMPILED_AS)


def record_uid(row: Mapping[str, Any]) -> str:
    """One attempt of one job: the same record read twice (resume, a second --log) gives the same uid."""
    parts = {k: plain(row.get(k)) for k in (Col.IDENTITY, Col.HOST, Col.PID, Col.STARTED_AT)}
    return content_key(parts)


def plain(value: Any) -> Any:
    """A table cell as plain Python: NaN -> None, numpy scalars unwrapped, 23385.0 -> 23385 (a column with a
    missing cell turns its integers into floats)."""
    if missing(value):
        return None
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def run_name(row: Mapping[str, Any], job_dir: Path) -> str:
    """e.g. '3: qint8_mixed_float32 b4 openvino'."""
    parts = [row.get(Col.PRECISION), f"b{plain(row.get(Col.BATCH))}", row.get(Col.ENGINE)]
    return f"{job_dir.name}: " + " ".join(str(p) for p in parts if not missing(p))


def _text(value: Any, limit: int) -> str:
    text = " ".join(map(str, value)) if isinstance(value, list) else str(plain(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_params(row: Mapping[str, Any]) -> dict[str, str]:
    params = {name: _text(row.get(column), 500) for name, column in PARAMS if not missing(row.get(column))}
    overrides = row.get(Col.OVERRIDES)
    if isinstance(overrides, list):
        params["overrides"] = _text(overrides, 6000)
    return params


def job_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """Finite numbers of the row: Dice, worst image, throughput, latency percentiles, host costs, stage times,
    and the sweep's Δ vs fp32 with its interval where the row has them."""
    out = {}
    for key, value in row.items():
        wanted = key.startswith(METRIC_PREFIXES) and not any(skip in key for skip in METRIC_SKIP)
        value = plain(value)
        if not (wanted or key in SWEEP_METRICS) or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def machine(row: Mapping[str, Any]) -> str:
    """e.g. 'AMD EPYC (avx2, f16c, fma) · 2 cores · host vm'."""
    flags = row.get(Col.CPU_FLAGS)
    cpu = f"{row.get(Col.CPU_MODEL)} ({', '.join(flags) if isinstance(flags, list) else '-'})"
    return f"{cpu} · {plain(row.get(Col.CPU_COUNT))} cores · host {row.get(Col.HOST)}"


def job_tags(row: Mapping[str, Any], job_dir: Path) -> dict[str, str]:
    """Status, error, machine, engine version and where the record lives, for filtering in the UI."""
    tags = {
        "status": str(row.get(Col.STATUS)),
        "machine": machine(row),
        "engine_version": str(row.get(Col.ENGINE_VERSION)),
        "job_dir": str(job_dir.resolve()),
        "identity": str(row.get(Col.IDENTITY)),
    }
    if row.get(Col.REMARKS):
        tags["mlflow.note.content"] = _text(row[Col.REMARKS], 5000)  # the run's description in the UI
    if not missing(row.get(Col.ERROR)):
        tags["error"] = _text(row.get(Col.ERROR), 5000)
    return {**tags, **sweep_tags(row)}


def sweep_tags(row: Mapping[str, Any]) -> dict[str, str]:
    return {key: _text(row.get(key), 5000) for key in SWEEP_TAGS if not missing(row.get(key))}
