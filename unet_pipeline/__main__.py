"""`python -m unet_pipeline [overrides]`: one job; `-m` for a sweep. Thin: the work is in job.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from hydra_plugins.unet_pipeline_slurm import ensure_registered

from . import preflight, results, tracking
from .config import register_configs
from .job import run_job
from .job_record import RESULT_FILE
from .summary import print_report

register_configs()
ensure_registered()


@hydra.main(version_base="1.3", config_path="pkg://unet_pipeline.conf", config_name="pipeline")
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
    frame = results.write_tables(out_dir)
    if target is not None and tracking.track_sweep(target, out_dir, frame) is None:
        frame = results.write_tables(out_dir)  # the row now says it was not tracked
    print_report(frame, out_dir, record=out_dir / RESULT_FILE)
    if record["status"] not in results.OK_STATUSES:
        print(f"error: {record['error']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    preflight.exit_on_error("pipeline")
    main()
