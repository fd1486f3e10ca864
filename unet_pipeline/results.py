"""`python -m unet_pipeline.results <sweep dir> [select.key=value ...] [--log]`: rebuild a sweep's (or a run's)
tables from the records on disk, print its summary and the recommendation under the sweep's `select` constraints
(or those given), and log it to MLflow on request (unet_pipeline/report/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unet_pipeline.core import PipelineError
from unet_pipeline.report import all_completed, print_report, recommend_sweep, tracking, write_tables
from unet_pipeline.report.recommend import recorded_select, select_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unet_pipeline.results", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep (or run) dir holding job result.json files")
    parser.add_argument("--log", action="store_true", help="also log it to MLflow (runs already there are kept)")
    parser.add_argument("--tracking-uri", help="MLflow server or store (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite under outputs/)")  # fmt: skip
    parser.add_argument("--experiment", help="MLflow experiment (default: the sweep's experiment or model name)")
    parser.add_argument("select", nargs="*", metavar="select.KEY=VALUE",
                        help="the recommendation's constraints (conf/select/), e.g. select.max_p99_ms=30")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory", file=sys.stderr)
        return 2
    try:
        select = select_settings(args.select, recorded_select(args.sweep_dir))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame = write_tables(args.sweep_dir)
    if frame.empty:
        print(f"error: no jobs (result.json) under {args.sweep_dir}", file=sys.stderr)
        return 1
    print_report(frame, args.sweep_dir)
    chosen = recommend_sweep(args.sweep_dir, frame, select).chosen if len(frame) > 1 else None
    if args.log:
        target = tracking.target_for_dir(args.sweep_dir, frame, args.tracking_uri, args.experiment)
        if target is None:
            print(f"error: {tracking.INSTALL_HINT}", file=sys.stderr)
            return 2
        tracking.track_sweep(target, args.sweep_dir, frame, chosen.job if chosen else None)
    return 0 if all_completed(frame) else 1


if __name__ == "__main__":
    sys.exit(main())
