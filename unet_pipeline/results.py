"""Aggregate every job's result.json under a directory into results.csv and results.md.

Reads only from disk, so any launcher, a crash or a resume still yields a correct table. Also a CLI:
`python -m unet_pipeline.results <sweep_dir>`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import compare, stats
from .job_record import RESULT_FILE
from .records import write_atomic

CSV_FILE, MD_FILE = "results.csv", "results.md"
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
PLOT_FILE, FULL_RES_PLOT_FILE = "pareto.png", "pareto_full_res.png"
# Dice axis of each plot: (per-job Dice, its Δ and interval prefix, per_image.csv column, axis label)
PLOT_AXES = {
    PLOT_FILE: ("metrics.dice", "dice", "dice", "Dice (model resolution)"),
    FULL_RES_PLOT_FILE: ("metrics.dice_full", "dice_full", "dice_full", "Dice (full resolution, source frame)"),
}
_DROP = ("config", "traceback")


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def load_records(root: Path) -> list[dict[str, Any]]:
    """One record per job dir under root: its result.json, or a row saying why there is none."""
    job_dirs = {p.parent for p in root.rglob(RESULT_FILE)} | {p.parent.parent for p in root.rglob(".hydra/config.yaml")}
    records = []
    for job_dir in sorted(job_dirs, key=_natural_key):
        path = job_dir / RESULT_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            record = {"status": "missing", "error": "no result.json (job killed or still running)"}
        except (OSError, json.JSONDecodeError) as exc:
            record = {"status": "unreadable", "error": f"result.json unreadable ({type(exc).__name__})"}
        if record.get("status") == "running":
            record["error"] = "did not finish (killed, or still running); re-run the sweep to resume it"
        relative = str(job_dir.relative_to(root))
        record["job_dir"] = job_dir.name if relative == "." else relative
        records.append(record)
    return records


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
DROP_WARNING = 0.01  # a lower precision this far below its engine's fp32 Dice gets a warning naming the likely cause


def _int8_target(row: pd.Series) -> str:
    """The host CPU's int8 class where int8 runs on it, else the device it runs on (cuda, mlu)."""
    runs_on = row.get("quantization.overflow_fix.runs_on")
    if isinstance(runs_on, str) and runs_on != "cpu":
        return runs_on
    return str(row.get("quantization.overflow_fix.cpu.int8_kind"))


def _saturates_here(row: pd.Series) -> bool:
    """int8 ran on this host's CPU, whose u8 x s8 sums saturate (an older record without runs_on: on the CPU)."""
    runs_on = row.get("quantization.overflow_fix.runs_on")
    on_cpu = not isinstance(runs_on, str) or runs_on == "cpu"
    return on_cpu and row.get("quantization.overflow_fix.cpu.saturates") is True


def precision_warning(row: pd.Series) -> str | None:
    """A warning naming the likely cause and the fix, for a completed row far below its engine's fp32 Dice."""
    delta = row.get("dice_delta_vs_fp32")
    precision = str(row.get("job.precision") or "")
    if row.get("status") != "completed" or not pd.notna(delta) or delta >= -DROP_WARNING:
        return None
    head = f"warning: Dice {delta:+.4f} vs fp32"
    if precision.startswith("qint"):
        overflow = row.get("quantization.overflow_fix.chosen")
        if _saturates_here(row) and overflow != "enable":
            kind = row.get("quantization.overflow_fix.cpu.int8_kind")
            return (
                f"{head}: likely u8 x s8 saturation (this CPU is {kind} without VNNI; overflow_fix={overflow} "
                "leaves 8-bit weights); set calibration.overflow_fix=enable (or auto)"
            )
        return (
            f"{head}: likely calibration (too few or unrepresentative images, outlier ranges); try more "
            "calibration.num_samples, recipe=int8_percentile, or calibration.max_dice_drop=0.001"
        )
    if "float16" in precision and "bfloat16" not in precision:
        return f"{head}: likely float16 overflow or underflow in activations; try force_bfloat16 or force_float32"
    if "bfloat16" in precision:
        return f"{head}: likely bfloat16's 8-bit mantissa in sensitive layers; try force_float32 or an int8 recipe"
    return None


def warnings(frame: pd.DataFrame) -> list[str]:
    """The table's warnings, one line per job, for the run's summary."""
    return [
        f"{job}: {text}" for job, text in zip(frame["job_dir"], frame["warning"], strict=True) if isinstance(text, str)
    ]


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records (dotted keys) and add the derived display columns."""
    trimmed = [{k: v for k, v in r.items() if k not in _DROP} for r in records]
    frame = pd.json_normalize(trimmed)
    for column in {key for _, key in MD_COLUMNS} | {"job.shape", "job.batch_range", "job.input_size", "notes"}:
        if column not in frame:
            frame[column] = None
    frame["shape"] = [
        f"dynamic {r[0]}..{r[1]}" if shape == "dynamic" and isinstance(r, list) else shape
        for shape, r in zip(frame["job.shape"], frame["job.batch_range"], strict=True)
    ]
    frame["input"] = [f"{s[0]}x{s[1]}" if isinstance(s, list) else None for s in frame["job.input_size"]]
    frame["compiled_as"] = frame.apply(_compiled_as, axis=1)
    frame["calibration"] = frame.apply(_calibration, axis=1)
    _add_fp32_comparison(frame)
    frame["warning"] = frame.apply(precision_warning, axis=1)
    frame["remarks"] = [
        err
        if isinstance(err, str)
        else "; ".join([*([warn] if isinstance(warn, str) else []), *(notes if isinstance(notes, list) else [])])
        for err, notes, warn in zip(frame["error"], frame["notes"], frame["warning"], strict=True)
    ]
    return frame


def fp32_reference(done_fp32: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The completed fp32 row of the same engine (same batch and shape if the sweep has one), or None."""
    same_engine = done_fp32[done_fp32["job.engine"] == row["job.engine"]]
    exact = same_engine[(same_engine["job.batch"] == row["job.batch"]) & (same_engine["shape"] == row["shape"])]
    return exact.iloc[0] if len(exact) else (same_engine.iloc[0] if len(same_engine) else None)


def _completed_fp32(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["status"] == "completed") & (frame["job.precision"] == "force_float32")]


def _add_fp32_comparison(frame: pd.DataFrame) -> None:
    """Speed-up and Dice delta against the sweep's fp32 row of the same engine (same batch and shape if any)."""
    speed, delta = [], []
    done = _completed_fp32(frame)
    for _, row in frame.iterrows():
        ref = fp32_reference(done, row)
        ok = ref is not None and row["status"] == "completed"
        thr, ref_thr = (
            (row["benchmark.engine.throughput_ips"], ref["benchmark.engine.throughput_ips"]) if ok else (None, None)
        )
        speed.append(thr / ref_thr if ok and pd.notna(thr) and pd.notna(ref_thr) and ref_thr else None)
        dice, ref_dice = (row["metrics.dice"], ref["metrics.dice"]) if ok else (None, None)
        delta.append(dice - ref_dice if ok and pd.notna(dice) and pd.notna(ref_dice) else None)
    frame["speedup_vs_fp32"] = speed
    frame["dice_delta_vs_fp32"] = delta


def plot_pareto(frame: pd.DataFrame, path: Path, root: Path) -> bool:
    """Throughput against Dice, one labelled point per job with its paired 95 % interval against its fp32 row,
    and the front of points no other beats *distinguishably* (stats.distinguishable_front); False if nothing.
    The Dice is the model-resolution one for pareto.png, the full-resolution one for pareto_full_res.png."""
    dice, prefix, per_image_column, axis_label = PLOT_AXES[path.name]
    if dice not in frame:
        return False
    rows = frame[frame[dice].notna() & frame["benchmark.engine.throughput_ips"].notna()]
    if rows.empty:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    x = rows["benchmark.engine.throughput_ips"].astype(float).tolist()
    y = rows[dice].astype(float).tolist()
    mean, ci_low, ci_high = (rows[f"{prefix}_delta_{end}"] for end in ("vs_fp32", "ci_low", "ci_high"))
    low = [m - lo if pd.notna(lo) else 0.0 for m, lo in zip(mean, ci_low, strict=True)]
    high = [hi - m if pd.notna(hi) else 0.0 for m, hi in zip(mean, ci_high, strict=True)]
    several_engines = rows["job.engine"].nunique() > 1
    labels = [
        f"{p} b{b}" + (f" {e}" if several_engines else "")
        for p, b, e in zip(rows["job.precision"], rows["job.batch"], rows["job.engine"], strict=True)
    ]
    per_image = [compare.per_image_dice(root, job, per_image_column) for job in rows["job_dir"]]
    front = sorted(stats.distinguishable_front(x, per_image), key=lambda i: x[i])
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.errorbar(x, y, yerr=[np.maximum(low, 0), np.maximum(high, 0)], fmt="o", color="tab:blue", ecolor="tab:gray",
                capsize=3, zorder=2, label="job (bar: 95 % interval of Δ vs fp32)")  # fmt: skip
    ax.plot([x[i] for i in front], [y[i] for i in front], "o-", color="tab:red", mfc="none", ms=12, zorder=3,
            label="front (distinguishable differences only)")  # fmt: skip
    for n, ((px, py), label) in enumerate(sorted(zip(zip(x, y, strict=True), labels, strict=True))):
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(5, 6 if n % 2 else -12), fontsize=8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter(useOffset=False))  # plain Dice values
    ax.set_xlabel("engine throughput (images/s, sync)")
    ax.set_ylabel(axis_label)
    ax.set_title(f"Throughput vs Dice: {path.parent.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(frame: pd.DataFrame) -> str:
    table = frame[[key for _, key in MD_COLUMNS]].copy()
    table.columns = [name for name, _ in MD_COLUMNS]
    table = table.astype(object).where(table.notna(), None)
    return table.to_markdown(index=False, floatfmt=".4g", missingval="-")


def _add_intervals(frame: pd.DataFrame, deltas: pd.DataFrame) -> None:
    """Per job, the paired 95 % interval of its per-image Δ against its fp32 row (model and full resolution),
    whether it excludes zero, the worst image, and the cells the table shows (stats.py)."""
    for column, prefix, worst_column in (
        ("delta", "dice", "worst_image_delta_vs_fp32"),
        ("delta_full", "dice_full", "worst_image_full_delta_vs_fp32"),
    ):
        intervals: dict[str, stats.Interval] = {}
        worst: dict[str, float] = {}
        if column in deltas:
            for job, rows in deltas.dropna(subset=[column]).groupby("job", sort=False):
                intervals[job] = stats.paired_interval(rows[column].to_numpy())
                worst[job] = float(rows[column].min())
        found = [intervals.get(job) for job in frame["job_dir"]]
        if prefix == "dice_full":  # the model-size mean is already there (_add_fp32_comparison)
            frame["dice_full_delta_vs_fp32"] = [i.mean if i else None for i in found]
        frame[f"{prefix}_delta_ci_low"] = [i.low if i else None for i in found]
        frame[f"{prefix}_delta_ci_high"] = [i.high if i else None for i in found]
        frame[f"{prefix}_delta_distinguishable"] = [i.distinguishable if i else None for i in found]
        frame[f"{prefix}_delta_shown"] = [
            f"{i.describe()}{' *' if i.distinguishable else ''}" if i else None for i in found
        ]
        frame[worst_column] = [worst.get(job) for job in frame["job_dir"]]


def _throughput_spread(frame: pd.DataFrame) -> list[str | None]:
    """'min..max' of the engine rounds where benchmark.repeats > 1 (the figure shown is their median)."""
    rounds = frame["benchmark.engine.rounds_ips"] if "benchmark.engine.rounds_ips" in frame else [None] * len(frame)
    return [f"{min(r):.4g}..{max(r):.4g}" if isinstance(r, list) and len(r) > 1 else None for r in rounds]


def write_tables(root: Path) -> pd.DataFrame:
    """Write root/results.csv (every field) and root/results.md (the summary); return the frame."""
    frame = to_frame(load_records(root))
    done_fp32 = _completed_fp32(frame)
    deltas = compare.per_image_deltas(root, frame, lambda row: fp32_reference(done_fp32, row))
    _add_intervals(frame, deltas)
    frame["throughput_spread"] = _throughput_spread(frame)
    flips = []
    if not deltas.empty:
        write_atomic(root / compare.COMPARISON_FILE, deltas.to_csv(index=False))
        flips = compare.write_flips(root, deltas)
    csv_frame = frame.drop(columns=["remarks", "dice_delta_shown", "dice_full_delta_shown"])
    write_atomic(root / CSV_FILE, csv_frame.to_csv(index=False))
    failed = int((~frame["status"].isin(OK_STATUSES)).sum())
    header = (
        f"# Results: {root.name}\n\n{len(frame)} jobs, {len(frame) - failed} completed, {failed} not completed.\n\n"
    )
    figure = "".join(
        f"\n![throughput vs {PLOT_AXES[name][3]}, Pareto front marked]({name})\n"
        for name in PLOT_AXES
        if len(frame) > 1 and plot_pareto(frame, root / name, root)
    )
    legend = (
        "\nΔ columns: mean per-image difference to the same engine's fp32 row with its paired 95 % bootstrap "
        "interval over images; `*`: the interval excludes 0 (a difference beyond the images' noise).\n"
        if frame["dice_delta_shown"].notna().any()
        else ""
    )
    pictures = compare.markdown_section(deltas, flips) + compare.gallery_section(root, frame)
    write_atomic(root / MD_FILE, header + markdown(frame) + "\n" + legend + figure + pictures)
    return frame


OK_STATUSES = ("completed", "planned")  # planned: a dry run that wrote its plan


def all_completed(frame: pd.DataFrame) -> bool:
    return bool(len(frame)) and bool(frame["status"].isin(OK_STATUSES).all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_pipeline.results", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep (or run) dir holding job result.json files")
    parser.add_argument("--log", action="store_true", help="also log it to MLflow (runs already there are kept)")
    parser.add_argument("--tracking-uri", help="MLflow server or store (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite under outputs/)")  # fmt: skip
    parser.add_argument("--experiment", help="MLflow experiment (default: the sweep's experiment or model name)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory", file=sys.stderr)
        return 2
    frame = write_tables(args.sweep_dir)
    if frame.empty:
        print(f"error: no jobs (result.json) under {args.sweep_dir}", file=sys.stderr)
        return 1
    from .summary import print_report  # summary builds on this module

    print_report(frame, args.sweep_dir)
    if args.log:
        from . import tracking

        target = tracking.target_for_dir(args.sweep_dir, frame, args.tracking_uri, args.experiment)
        if target is None:
            print(f"error: {tracking.INSTALL_HINT}", file=sys.stderr)
            return 2
        tracking.track_sweep(target, args.sweep_dir, frame)
    return 0 if all_completed(frame) else 1


if __name__ == "__main__":
    sys.exit(main())
