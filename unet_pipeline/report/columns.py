"""The columns of a results row, named once: the flattened result.json keys every table, the summary and MLflow
read, and the display columns derived from them (what was compiled, how int8 was calibrated).
"""

from __future__ import annotations

import pandas as pd


class Col:
    """Every results-row column the reports read, spelled once: result.json's keys flattened by
    `pandas.json_normalize` (`job.precision`, `benchmark.engine.throughput_ips`, ...) and the columns the tables
    derive from them (`shape`, `compiled_as`, `dice_delta_vs_fp32`, ...)."""

    JOB_DIR = "job_dir"
    STATUS = "status"
    ERROR = "error"
    NOTES = "notes"
    IDENTITY = "identity"
    STARTED_AT = "started_at"
    FINISHED_AT = "finished_at"
    MODEL = "job.model"
    ENGINE = "job.engine"
    ENGINE_VERSION = "job.engine_version"
    PRECISION = "job.precision"
    BATCH = "job.batch"
    BATCH_RANGE = "job.batch_range"
    SHAPE_MODE = "job.shape"
    INPUT_SIZE = "job.input_size"
    CHECKPOINT = "job.checkpoint"
    CHECKPOINT_SHA256 = "job.checkpoint_sha256"
    DECODE = "job.decode"
    DEVICE = "job.device"
    INPUT_FORMAT = "job.input_format"
    OVERRIDES = "job.overrides"
    PREFETCH_BATCHES = "job.prefetch_batches"
    RESIZE = "job.resize"
    ALIGN = "job.align"
    WORKERS = "job.workers"
    DICE = "metrics.dice"
    DICE_FULL = "metrics.dice_full"
    NUM_IMAGES = "metrics.num_images"
    ENGINE_IPS = "benchmark.engine.throughput_ips"
    E2E_IPS = "benchmark.end_to_end.throughput_ips"
    ASYNC_IPS = "benchmark.engine_async.throughput_ips"
    P50_MS = "benchmark.engine.latency_ms.p50"
    P99_MS = "benchmark.engine.latency_ms.p99"
    ENGINE_CAPPED = "benchmark.engine.capped"
    ENGINE_CALLS = "benchmark.engine.iterations"
    ENGINE_ROUNDS_IPS = "benchmark.engine.rounds_ips"
    E2E_VS_ENGINE = "benchmark.end_to_end.vs_engine"
    COMPILED_PRECISION = "compiled.inference_precision"
    INT8_SHARE = "compiled.quantized_layer_share"
    CALIBRATION_IMAGES = "data.calibration_images"
    DATA_ROOT = "data.root"
    DATA_SPLIT = "data.split"
    CPU_COUNT = "machine.cpu_count"
    CPU_FLAGS = "machine.cpu_flags"
    CPU_MODEL = "machine.cpu_model"
    GPU = "machine.gpu"
    PLATFORM = "machine.platform"
    HOST = "process.host"
    PID = "process.pid"
    KEPT_FLOAT = "quantization.accuracy_control.kept_float"
    QUANT_ACTIVATIONS = "quantization.options.activations"
    QUANT_BIAS_CORRECTION = "quantization.options.bias_correction"
    QUANT_KEEP_FLOAT = "quantization.options.keep_float"
    QUANT_MAX_DICE_DROP = "quantization.options.max_dice_drop"
    QUANT_METHOD = "quantization.options.method"
    QUANT_PERCENTILE = "quantization.options.percentile"
    QUANT_WEIGHTS = "quantization.options.weights"
    OVERFLOW_FIX = "quantization.overflow_fix.chosen"
    INT8_KIND = "quantization.overflow_fix.cpu.int8_kind"
    INT8_SATURATES = "quantization.overflow_fix.cpu.saturates"
    INT8_RUNS_ON = "quantization.overflow_fix.runs_on"
    SHAPE = "shape"
    INPUT = "input"
    CALIBRATION = "calibration"
    COMPILED_AS = "compiled_as"
    REMARKS = "remarks"
    WARNING = "warning"
    DICE_DELTA = "dice_delta_vs_fp32"
    DICE_DELTA_DISTINGUISHABLE = "dice_delta_distinguishable"
    DICE_DELTA_LOW = "dice_delta_ci_low"
    DICE_DELTA_HIGH = "dice_delta_ci_high"
    WORST_IMAGE_DELTA = "worst_image_delta_vs_fp32"
    E2E_PASSES_IPS = "benchmark.end_to_end.passes_ips"
    DICE_FULL_DELTA_DISTINGUISHABLE = "dice_full_delta_distinguishable"
    SPEEDUP = "speedup_vs_fp32"
    HARDWARE = "hardware"


# (column in the markdown table, flattened result.json key)
MD_COLUMNS = [
    ("job", Col.JOB_DIR),
    ("model", Col.MODEL),
    ("engine", Col.ENGINE),
    ("precision", Col.PRECISION),
    (Col.CALIBRATION, Col.CALIBRATION),
    ("batch", Col.BATCH),
    (Col.SHAPE, Col.SHAPE),
    (Col.INPUT, Col.INPUT),
    ("dice", Col.DICE),
    ("Δ dice vs fp32 [95 % CI]", "dice_delta_shown"),
    ("worst image Δ", "worst_image_delta_vs_fp32"),
    ("dice full res", Col.DICE_FULL),
    ("Δ full res [95 % CI]", "dice_full_delta_shown"),
    ("worst full-res Δ", "worst_image_full_delta_vs_fp32"),
    ("images", Col.NUM_IMAGES),
    ("compiled as", Col.COMPILED_AS),
    ("p50 ms", Col.P50_MS),
    ("p99 ms", Col.P99_MS),
    ("img/s", Col.ENGINE_IPS),
    ("img/s over repeats", "throughput_spread"),
    ("img/s async", Col.ASYNC_IPS),
    ("img/s e2e", Col.E2E_IPS),
    ("e2e / engine", Col.E2E_VS_ENGINE),
    ("speed-up vs fp32", Col.SPEEDUP),
    (Col.STATUS, Col.STATUS),
    ("error / notes", Col.REMARKS),
]


def compiled_as_cell(row: pd.Series) -> str | None:
    """e.g. 'int8 83% + float32': what the engine really compiled."""
    ran = row.get(Col.COMPILED_PRECISION)
    if not isinstance(ran, str):
        return None
    share = row.get(Col.INT8_SHARE)
    if isinstance(share, float) and share > 0:
        return f"int8 {share:.0%} + {ran}"
    if str(row.get(Col.PRECISION, "")).startswith("qint") and not (isinstance(share, float) and share == 0):
        return f"{row[Col.PRECISION]} (unverified: engine reports no per-layer precision)"
    return ran


def calibration_cell(row: pd.Series) -> str | None:
    """e.g. '50 imgs · histogram · per_channel · act default · float [first, last] · drop≤0.001: 2 kept float'."""
    method = row.get(Col.QUANT_METHOD)
    if not isinstance(method, str):
        return None
    images = row.get(Col.CALIBRATION_IMAGES)
    parts = [
        f"{int(images) if pd.notna(images) else '?'} imgs",
        method if method != "percentile" else f"percentile {row.get(Col.QUANT_PERCENTILE)}",
        str(row.get(Col.QUANT_WEIGHTS)),
        f"act {row.get(Col.QUANT_ACTIVATIONS)}",
    ]
    bias = row.get(Col.QUANT_BIAS_CORRECTION)
    if isinstance(bias, str) and bias != "default":
        parts.append(f"bias corr. {bias}")
    keep = row.get(Col.QUANT_KEEP_FLOAT)
    if isinstance(keep, list) and keep:
        parts.append(f"float [{', '.join(map(str, keep))}]")
    drop = row.get(Col.QUANT_MAX_DICE_DROP)
    if pd.notna(drop):
        kept = row.get(Col.KEPT_FLOAT)
        parts.append(f"drop≤{drop:g}: {len(kept) if isinstance(kept, list) else '?'} kept float")
    overflow = row.get(Col.OVERFLOW_FIX)
    if isinstance(overflow, str):
        parts.append(f"{_WEIGHT_BITS.get(overflow, overflow)} ({_int8_target(row)})")
    return " · ".join(parts)


_WEIGHT_BITS = {"enable": "7-bit weights", "first_layer": "7-bit first layer", "disable": "8-bit weights"}


def _int8_target(row: pd.Series) -> str:
    """The host CPU's int8 class where int8 runs on it, else the device it runs on (cuda, mlu)."""
    runs_on = row.get(Col.INT8_RUNS_ON)
    if isinstance(runs_on, str) and runs_on != "cpu":
        return runs_on
    return str(row.get(Col.INT8_KIND))
