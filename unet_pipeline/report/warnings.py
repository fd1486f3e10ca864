"""A warning for a row far below its engine's fp32 Dice, naming the likely cause (int8 saturation, calibration,
float16 range, bfloat16 mantissa) and the setting that fixes it.
"""

from __future__ import annotations

import pandas as pd

from unet_pipeline.report.columns import Col

DROP_WARNING = 0.01  # a lower precision this far below its engine's fp32 Dice gets a warning naming the likely cause


def _saturates_here(row: pd.Series) -> bool:
    """int8 ran on this host's CPU, whose u8 x s8 sums saturate (an older record without runs_on: on the CPU)."""
    runs_on = row.get(Col.INT8_RUNS_ON)
    on_cpu = not isinstance(runs_on, str) or runs_on == "cpu"
    return on_cpu and row.get(Col.INT8_SATURATES) is True


def precision_warning(row: pd.Series) -> str | None:
    """A warning naming the likely cause and the fix, for a completed row far below its engine's fp32 Dice."""
    delta = row.get(Col.DICE_DELTA)
    precision = str(row.get(Col.PRECISION) or "")
    if row.get(Col.STATUS) != "completed" or not pd.notna(delta) or delta >= -DROP_WARNING:
        return None
    head = f"warning: Dice {delta:+.4f} vs fp32"
    if precision.startswith("qint"):
        overflow = row.get(Col.OVERFLOW_FIX)
        if _saturates_here(row) and overflow != "enable":
            kind = row.get(Col.INT8_KIND)
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
        f"{job}: {text}"
        for job, text in zip(frame[Col.JOB_DIR], frame[Col.WARNING], strict=True)
        if isinstance(text, str)
    ]
