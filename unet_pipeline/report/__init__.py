"""Report: tables, plots, per-image comparisons, the recommendation, the terminal summary and MLflow tracking,
all made from records on disk.

Imports neither torch nor an engine (an import-linter contract and a test check it)."""

from unet_pipeline.report import tables, tracking
from unet_pipeline.report.recommend import recommend_sweep
from unet_pipeline.report.summary import print_report
from unet_pipeline.report.tables import OK_STATUSES, all_completed, to_frame, write_tables

__all__ = [
    "OK_STATUSES",
    "all_completed",
    "print_report",
    "recommend_sweep",
    "tables",
    "to_frame",
    "tracking",
    "write_tables",
]
