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
        target = _target(config)
        if target is not None:
            tracking.track_sweep(target, sweep_dir, frame, chosen.job if chosen else None)
        if not all_completed(frame):
            failed = int((~frame["status"].isin(OK_STATUSES)).sum())
            print(f"error: {failed} of {len(frame)} jobs did not complete (see the table)", file=sys.stderr)
            sys.exit(1)


def _target(config: DictConfig) -> tracking.Target | None:
    return tracking.Target.of(config.get("logger"), config.hydra.runtime.choices, config.model.name)
