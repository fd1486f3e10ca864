"""Where precisions disagree: per-image Dice against the same engine's fp32 row, and pictures of flipped pixels.

Read from the job dirs on disk (per_image.csv, predictions/), like every table: any launcher, any resume."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from unet_pipeline.core import write_atomic
from unet_pipeline.report.columns import Col

PER_IMAGE = "per_image.csv"
COMPARISON_FILE, FLIPS_DIR = "per_image_vs_fp32.csv", "flips"
DEFAULT_FLIPS = 3  # flip pictures per job when it saved predictions
FP32_ONLY, OTHER_ONLY = (255, 128, 0), (255, 0, 255)  # BGR: blue = car for fp32 only, magenta = for the other only


def _per_image(root: Path, job_dir: str) -> pd.DataFrame | None:
    try:
        return pd.read_csv(root / job_dir / PER_IMAGE)
    except (OSError, ValueError):
        return None


def per_image_deltas(root: Path, frame: pd.DataFrame, reference) -> pd.DataFrame:
    """One row per (job, image) of every completed non-fp32 job that has an fp32 reference: Dice, fp32 Dice, Δ
    (and at full resolution, where both jobs measured it)."""
    parts = []
    for _, row in frame[frame[Col.STATUS] == "completed"].iterrows():
        ref = reference(row)
        if ref is None or ref[Col.JOB_DIR] == row[Col.JOB_DIR]:
            continue
        ours, theirs = _per_image(root, row[Col.JOB_DIR]), _per_image(root, ref[Col.JOB_DIR])
        if ours is None or theirs is None:
            continue
        full = "dice_full" in ours and "dice_full" in theirs
        columns = ["image_id", "dice", *(["dice_full"] if full else [])]
        merged = ours.merge(theirs[columns], on="image_id", suffixes=("", "_fp32"))
        merged["delta"] = merged["dice"] - merged["dice_fp32"]
        if full:
            merged["delta_full"] = merged["dice_full"] - merged["dice_full_fp32"]
        merged.insert(0, "fp32_job", ref[Col.JOB_DIR])
        merged.insert(0, "precision", row[Col.PRECISION])
        merged.insert(0, "job", row[Col.JOB_DIR])
        parts.append(merged)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def per_image_dice(root: Path, job_dir: str, column: str = "dice") -> dict[str, float]:
    """{image id: Dice} of one job, or {} where it has no readable per_image.csv (or not that column)."""
    table = _per_image(root, job_dir)
    if table is None or column not in table:
        return {}
    return dict(zip(table["image_id"], table[column], strict=True))


def flip_picture(photo_rgb: np.ndarray, fp32: np.ndarray, other: np.ndarray, caption: list[str]) -> np.ndarray:
    """The photo at model size, dimmed, with the pixels only fp32 calls car in blue, only the other in magenta."""
    canvas = (cv2.cvtColor(photo_rgb, cv2.COLOR_RGB2BGR) * 0.55).astype(np.uint8)
    fp32_fg, other_fg = fp32 > 0, other > 0
    canvas[fp32_fg & ~other_fg] = FP32_ONLY
    canvas[other_fg & ~fp32_fg] = OTHER_ONLY
    scale, line = photo_rgb.shape[1] / 480, 16
    cv2.rectangle(canvas, (0, 0), (photo_rgb.shape[1], int((line * len(caption) + 6) * scale)), (0, 0, 0), -1)
    for n, text in enumerate(caption, start=1):
        cv2.putText(canvas, text, (int(4 * scale), int(line * n * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.42 * scale,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return canvas


def write_flips(root: Path, deltas: pd.DataFrame, per_job: int = DEFAULT_FLIPS) -> list[dict[str, object]]:
    """For each job's `per_job` worst drops, a flip picture from the two jobs' saved predictions (if both saved)."""
    written = []
    for job, rows in deltas.groupby("job", sort=False):
        for _, r in rows.nsmallest(per_job, "delta").iterrows():
            pair = [root / name / "predictions" / f"{r['image_id']}.png" for name in (job, r["fp32_job"])]
            if not all(path.is_file() for path in pair):  # predictions are saved only with save.overlays
                continue
            ours, fp32 = (cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in pair)
            photo = cv2.imread(str(r["image"])) if isinstance(r.get("image"), str) else None
            if ours is None or fp32 is None or photo is None:
                continue
            photo = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), ours.shape[::-1], interpolation=cv2.INTER_AREA)
            flipped = int(np.count_nonzero((ours > 0) != (fp32 > 0)))
            caption = [
                f"{r['image_id']}: {r['precision']} Dice {r['dice']:.4f}, fp32 {r['dice_fp32']:.4f}",
                f"{flipped} px flipped - blue: car for fp32 only, magenta: for {r['precision']} only",
            ]
            path = root / FLIPS_DIR / f"{str(job).replace('/', '_')}_{r['image_id']}.png"
            write_atomic(path, cv2.imencode(".png", flip_picture(photo, fp32, ours, caption))[1].tobytes())
            written.append({"job": job, "image_id": r["image_id"], "delta": r["delta"], "flipped": flipped,
                            "path": str(path.relative_to(root))})  # fmt: skip
    return written


def markdown_section(deltas: pd.DataFrame, flips: list[dict[str, object]], top: int = 10) -> str:
    """The images whose Dice dropped most against fp32, then the flip pictures."""
    if deltas.empty:
        return ""
    worst = deltas.nsmallest(top, "delta")[["job", "precision", "image_id", "dice_fp32", "dice", "delta"]]
    text = "\n## Where precisions disagree (per image, against the same engine's fp32 row)\n\n"
    text += worst.to_markdown(index=False, floatfmt=".5f") + f"\n\nAll images: [{COMPARISON_FILE}]({COMPARISON_FILE})\n"
    if flips:
        text += "\nPixels that flipped (blue: car for fp32 only; magenta: car for the other precision only):\n\n"
        text += "\n".join(f'<img src="{f["path"]}" width="480" alt="{f["image_id"]}">' for f in flips) + "\n"
    return text


def gallery_section(root: Path, frame: pd.DataFrame) -> str:
    """Each job's lowest-Dice overlays (save.overlays=N) as a small gallery."""
    column = "saved.overlays"
    if column not in frame:
        return ""
    text = ""
    for _, row in frame.iterrows():
        overlays = row[column]
        if not isinstance(overlays, list) or not overlays:
            continue
        prefix = "" if row[Col.JOB_DIR] == root.name else f"{row[Col.JOB_DIR]}/"
        text += f"\n### {row[Col.JOB_DIR]}: {row[Col.ENGINE]} {row[Col.PRECISION]} batch {row[Col.BATCH]}\n\n"
        text += "\n".join(
            f'<img src="{prefix}{o["path"]}" width="320" alt="{o["id"]} Dice {o["dice"]:.4f}">' for o in overlays
        )
        text += "\n"
    return "\n## Lowest-Dice images (red: predicted outline, green: ground truth)\n" + text if text else ""
