"""Aggregate every job's result.json under a directory into results.csv and results.md.

Reads only from disk, so any launcher, a crash or a resume still yields a correct table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from unet_pipeline.core import write_atomic
from unet_pipeline.metrics import intervals as stats
from unet_pipeline.record import load_records
from unet_pipeline.report import compare
from unet_pipeline.report.columns import MD_COLUMNS, Col, calibration_cell, compiled_as_cell
from unet_pipeline.report.plots import PLOT_AXES, plot_pareto
from unet_pipeline.report.warnings import precision_warning

CSV_FILE, MD_FILE = "results.csv", "results.md"
_DROP = ("config", "traceback")


def to_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flatten records (dotted keys) and add the derived display columns."""
    trimmed = [{k: v for k, v in r.items() if k not in _DROP} for r in records]
    frame = pd.json_normalize(trimmed)
    for column in {key for _, key in MD_COLUMNS} | {Col.SHAPE_MODE, Col.BATCH_RANGE, Col.INPUT_SIZE, Col.NOTES}:
        if column not in frame:
            frame[column] = None
    frame[Col.SHAPE] = [
        f"dynamic {r[0]}..{r[1]}" if shape == "dynamic" and isinstance(r, list) else shape
        for shape, r in zip(frame[Col.SHAPE_MODE], frame[Col.BATCH_RANGE], strict=True)
    ]
    frame[Col.INPUT] = [f"{s[0]}x{s[1]}" if isinstance(s, list) else None for s in frame[Col.INPUT_SIZE]]
    frame[Col.COMPILED_AS] = frame.apply(compiled_as_cell, axis=1)
    frame[Col.CALIBRATION] = frame.apply(calibration_cell, axis=1)
    _add_fp32_comparison(frame)
    frame[Col.WARNING] = frame.apply(precision_warning, axis=1)
    frame[Col.REMARKS] = [
        err
        if isinstance(err, str)
        else "; ".join([*([warn] if isinstance(warn, str) else []), *(notes if isinstance(notes, list) else [])])
        for err, notes, warn in zip(frame[Col.ERROR], frame[Col.NOTES], frame[Col.WARNING], strict=True)
    ]
    return frame


def fp32_reference(done_fp32: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The completed fp32 row of the same engine (same batch and shape if the sweep has one), or None."""
    same_engine = done_fp32[done_fp32[Col.ENGINE] == row[Col.ENGINE]]
    exact = same_engine[(same_engine[Col.BATCH] == row[Col.BATCH]) & (same_engine[Col.SHAPE] == row[Col.SHAPE])]
    return exact.iloc[0] if len(exact) else (same_engine.iloc[0] if len(same_engine) else None)


def _completed_fp32(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame[Col.STATUS] == "completed") & (frame[Col.PRECISION] == "force_float32")]


def _add_fp32_comparison(frame: pd.DataFrame) -> None:
    """Speed-up and Dice delta against the sweep's fp32 row of the same engine (same batch and shape if any)."""
    speed, delta = [], []
    done = _completed_fp32(frame)
    for _, row in frame.iterrows():
        ref = fp32_reference(done, row)
        ok = ref is not None and row[Col.STATUS] == "completed"
        thr, ref_thr = (row[Col.ENGINE_IPS], ref[Col.ENGINE_IPS]) if ok else (None, None)
        speed.append(thr / ref_thr if ok and pd.notna(thr) and pd.notna(ref_thr) and ref_thr else None)
        dice, ref_dice = (row[Col.DICE], ref[Col.DICE]) if ok else (None, None)
        delta.append(dice - ref_dice if ok and pd.notna(dice) and pd.notna(ref_dice) else None)
    frame[Col.SPEEDUP] = speed
    frame[Col.DICE_DELTA] = delta


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
        found = [intervals.get(job) for job in frame[Col.JOB_DIR]]
        if prefix == "dice_full":  # the model-size mean is already there (_add_fp32_comparison)
            frame["dice_full_delta_vs_fp32"] = [i.mean if i else None for i in found]
        frame[f"{prefix}_delta_ci_low"] = [i.low if i else None for i in found]
        frame[f"{prefix}_delta_ci_high"] = [i.high if i else None for i in found]
        frame[f"{prefix}_delta_distinguishable"] = [i.distinguishable if i else None for i in found]
        frame[f"{prefix}_delta_shown"] = [
            f"{i.describe()}{' *' if i.distinguishable else ''}" if i else None for i in found
        ]
        frame[worst_column] = [worst.get(job) for job in frame[Col.JOB_DIR]]


def _throughput_spread(frame: pd.DataFrame) -> list[str | None]:
    """'min..max' of the engine rounds where benchmark.repeats > 1 (the figure shown is their median)."""
    rounds = frame[Col.ENGINE_ROUNDS_IPS] if Col.ENGINE_ROUNDS_IPS in frame else [None] * len(frame)
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
    csv_frame = frame.drop(columns=[Col.REMARKS, "dice_delta_shown", "dice_full_delta_shown"])
    write_atomic(root / CSV_FILE, csv_frame.to_csv(index=False))
    failed = int((~frame[Col.STATUS].isin(OK_STATUSES)).sum())
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
    return bool(len(frame)) and bool(frame[Col.STATUS].isin(OK_STATUSES).all())
