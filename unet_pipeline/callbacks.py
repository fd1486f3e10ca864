"""Hydra callback: write the sweep's tables when a multirun ends."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from unet_pipeline.report import OK_STATUSES, all_completed, print_report, recommend_sweep, tracking, write_tables

log = logging.getLogger(__name__)


class ResultsTableCallback(Callback):
    """Aggregates result.json files into results.csv / results.md; exits non-zero if any job failed.

    Hydra skips this when a job raises, which our jobs never do (they record failures); the
    aggregator can also be run on its own: `python -m unet_pipeline.results <sweep_dir>`.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = _target(config)
        if target is not None:  # the parent run exists before any job, wherever the launcher runs them
            tracking.open_sweep(target, Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        frame = write_tables(sweep_dir)
        print_report(frame, sweep_dir)
        chosen = recommend_sweep(sweep_dir, frame, config.select).chosen
        if chosen is not None and config.select.bundle:
            _bundle(sweep_dir / chosen.job, Path(config.select.bundle))
        target = _target(config)
        if target is not None:
            tracking.track_sweep(target, sweep_dir, frame, chosen.job if chosen else None)
        if not all_completed(frame):
            failed = int((~frame["status"].isin(OK_STATUSES)).sum())
            print(f"error: {failed} of {len(frame)} jobs did not complete (see the table)", file=sys.stderr)
            sys.exit(1)


def _target(config: DictConfig) -> tracking.Target | None:
    return tracking.Target.of(config.get("logger"), config.hydra.runtime.choices, config.model.name)


def _bundle(job_dir: Path, out: Path) -> None:
    """select.bundle=<dir>: the chosen row's bundle; a failure is a warning (the sweep's results stand)."""
    from unet_pipeline.core import PipelineError
    from unet_pipeline.deploy.bundle import make_bundle  # the engines': only when a bundle is asked for

    try:
        print(
            f"bundle: {make_bundle(job_dir, out)} (python -m unet_pipeline.segment bundle={out} input=... output=...)"
        )
    except PipelineError as exc:
        print(f"warning: select.bundle={out}: {exc}", file=sys.stderr)
