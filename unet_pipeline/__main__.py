"""`python -m unet_pipeline [overrides]`: one job; `-m` for a sweep. Thin: the job is unet_pipeline/deploy/, the
tables and the summary unet_pipeline/report/."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hydra_plugins.unet_pipeline_slurm import ensure_registered
from unet_pipeline import preflight
from unet_pipeline.config.registry import hydra_main
from unet_pipeline.deploy import run_job
from unet_pipeline.record import RESULT_FILE
from unet_pipeline.report import OK_STATUSES, print_report, tracking, write_tables

ensure_registered()


@hydra_main("pipeline")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    record = run_job(
        cfg, out_dir, list(hydra_cfg.overrides.task), reraise_unexpected=os.environ.get("HYDRA_FULL_ERROR") == "1"
    )
    target = tracking.Target.of(cfg.logger, hydra_cfg.runtime.choices, cfg.model.name)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        if target is not None:  # each job logs itself from where it ran; the sweep's run is its parent
            tracking.track_job(target, out_dir, Path(hydra_cfg.sweep.dir))
        return  # the sweep's table and exit status come from ResultsTableCallback
    frame = write_tables(out_dir)
    if target is not None and tracking.track_sweep(target, out_dir, frame) is None:
        frame = write_tables(out_dir)  # the row now says it was not tracked
    print_report(frame, out_dir, record=out_dir / RESULT_FILE)
    if record["status"] not in OK_STATUSES:
        print(f"error: {record['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    preflight.exit_on_error("pipeline")
    main()
