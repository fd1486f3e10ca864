"""The Pareto plots of a sweep: throughput against Dice (model and full resolution), each job with its paired 95 %
interval against its fp32 row, and the front of jobs no other beats by more than the images' noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from unet_pipeline.metrics import intervals as stats
from unet_pipeline.report import compare
from unet_pipeline.report.columns import Col

PLOT_FILE, FULL_RES_PLOT_FILE = "pareto.png", "pareto_full_res.png"
# Dice axis of each plot: (per-job Dice, its Δ and interval prefix, per_image.csv column, axis label)
PLOT_AXES = {
    PLOT_FILE: (Col.DICE, "dice", "dice", "Dice (model resolution)"),
    FULL_RES_PLOT_FILE: (Col.DICE_FULL, "dice_full", "dice_full", "Dice (full resolution, source frame)"),
}


def plot_pareto(frame: pd.DataFrame, path: Path, root: Path) -> bool:
    """Throughput against Dice, one labelled point per job with its paired 95 % interval against its fp32 row,
    and the front of points no other beats *distinguishably* (stats.distinguishable_front); False if nothing.
    The Dice is the model-resolution one for pareto.png, the full-resolution one for pareto_full_res.png."""
    dice, prefix, per_image_column, axis_label = PLOT_AXES[path.name]
    if dice not in frame:
        return False
    rows = frame[frame[dice].notna() & frame[Col.ENGINE_IPS].notna()]
    if rows.empty:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    x = rows[Col.ENGINE_IPS].astype(float).tolist()
    y = rows[dice].astype(float).tolist()
    mean, ci_low, ci_high = (rows[f"{prefix}_delta_{end}"] for end in ("vs_fp32", "ci_low", "ci_high"))
    low = [m - lo if pd.notna(lo) else 0.0 for m, lo in zip(mean, ci_low, strict=True)]
    high = [hi - m if pd.notna(hi) else 0.0 for m, hi in zip(mean, ci_high, strict=True)]
    several_engines = rows[Col.ENGINE].nunique() > 1
    labels = [
        f"{p} b{b}" + (f" {e}" if several_engines else "")
        for p, b, e in zip(rows[Col.PRECISION], rows[Col.BATCH], rows[Col.ENGINE], strict=True)
    ]
    per_image = [compare.per_image_dice(root, job, per_image_column) for job in rows[Col.JOB_DIR]]
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
