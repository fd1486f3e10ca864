"""`logger=mlflow`: every job an MLflow run, every sweep a parent run with its jobs nested under it.

Everything is logged from the records on disk (a job's result.json, a sweep's results table), so a job logs from
wherever a launcher ran it, a crash or a resume still yields correct runs, and `python -m unet_pipeline.results
<dir> --log` logs an existing sweep after the fact. A run is found again by a tag naming the job's attempt
(`unet_pipeline.record_uid`: config identity, host, pid, start time), so a job that resume skips, or a sweep
logged twice, creates no second run. Tracking never costs a result: a server that is down, slow or refuses
gives a warning and a note on the job's row, and the record, the table and the exit status stay as they were."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from unet_pipeline.core import one_line, write_json
from unet_pipeline.record import RESULT_FILE
from unet_pipeline.report.columns import Col
from unet_pipeline.report.mlflow_runs import (
    INSTALL_HINT,
    SWEEP_ARTIFACTS,
    Target,
    Tracker,
    TrackingError,
    client_settings,
    default_uri,
    frame_rows,
    hydra_select,
)

__all__ = ["INSTALL_HINT", "Target", "installed", "open_sweep", "target_for_dir", "track_job", "track_sweep"]

log = logging.getLogger(__name__)
RECOMMENDED_TAG = "unet_pipeline.recommended"  # on the chosen job's run ("true") and the sweep's (its job dir)


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def target_for_dir(root: Path, frame: pd.DataFrame, uri: str | None, experiment: str | None) -> Target | None:
    """Where `results <dir> --log` logs: the given URI / experiment, else what the jobs were configured with
    (a record's logger settings, the experiment overlay Hydra recorded), else the defaults; None without MLflow."""
    if not installed():
        return None
    recorded = _recorded_logger(root)
    models = [m for m in frame.get(Col.MODEL, []) if isinstance(m, str)]
    return Target(
        uri=uri or recorded.get("tracking_uri") or default_uri(),
        experiment=experiment
        or recorded.get("experiment")
        or _hydra_choice(root, "experiment")
        or (models[0] if models else root.name),
        **{k: recorded[k] for k in ("timeout_s", "retries", "artifacts") if recorded.get(k) is not None},
    )


def _recorded_logger(root: Path) -> dict[str, Any]:
    """The logger settings of the first job under root that recorded logger=mlflow, else {}."""
    for path in sorted(root.rglob(RESULT_FILE)):
        try:
            logger = json.loads(path.read_text()).get("config", {}).get("logger") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if logger.get("name") == "mlflow":
            return logger
    return {}


def _hydra_choice(root: Path, group: str) -> str | None:
    """The option Hydra recorded for a config group, e.g. the experiment overlay's name."""
    choice = hydra_select(root, f"hydra.runtime.choices.{group}")
    return str(choice) if choice not in (None, "null") else None


def is_single_run(path: Path) -> bool:
    """A single run's dir (its job is the only run, no parent) rather than a sweep's."""
    return (path / RESULT_FILE).is_file()


def _note_on_record(job_dir: Path, note: str) -> None:
    """The job's row says it was not tracked; nothing else in its record changes."""
    path = job_dir / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    notes = [n for n in record.get(Col.NOTES) or [] if not str(n).startswith("not tracked:")]
    record[Col.NOTES] = [*notes, note]
    write_json(path, record)


def _not_tracked(target: Target, exc: Exception, where: Path) -> str:
    reason = str(exc) if isinstance(exc, TrackingError) else f"{type(exc).__name__}: {one_line(exc)}"
    return (
        f"not tracked: MLflow at {target.uri}: {reason}; the record is complete, log it later with "
        f"python -m unet_pipeline.results {where} --log"
    )


def track_job(target: Target, job_dir: Path, sweep_dir: Path | None) -> str | None:
    """Log one job from its result.json, nested under its sweep's run; the run id, or None (then a note on the
    job's row and a warning). Never raises."""
    from unet_pipeline.record import load_records
    from unet_pipeline.report.tables import to_frame

    try:
        with client_settings(target):
            tracker = Tracker(target)
            parent = tracker.sweep_run(sweep_dir) if sweep_dir is not None else None
            (row,) = frame_rows(to_frame(load_records(job_dir)))
            return tracker.job_run(row, job_dir, parent)[0]
    except Exception as exc:  # tracking never costs a result
        note = _not_tracked(target, exc, sweep_dir or job_dir)
        log.warning(note)
        _note_on_record(job_dir, note)
        return None


def open_sweep(target: Target, sweep_dir: Path) -> str | None:
    """The sweep's parent run, before its jobs start (so parallel jobs find it); None where it cannot be made."""
    try:
        with client_settings(target):
            return Tracker(target).sweep_run(sweep_dir)
    except Exception as exc:
        log.warning(_not_tracked(target, exc, sweep_dir))
        return None


def track_sweep(target: Target, sweep_dir: Path, frame: pd.DataFrame, recommended: str | None = None) -> str | None:
    """After the sweep's table: every job's run (created from disk where a job could not log itself) gets the
    sweep's comparisons, the recommended job's run a `unet_pipeline.recommended` tag; the parent run gets the
    tables, plots and recommendation and ends. A one-line warning, never a raise."""
    try:
        with client_settings(target):
            tracker = Tracker(target)
            single = is_single_run(sweep_dir)
            parent = None if single else tracker.sweep_run(sweep_dir)
            created = 0
            for row in frame_rows(frame):
                job_dir = sweep_dir if single else sweep_dir / str(row[Col.JOB_DIR])
                if not (job_dir / RESULT_FILE).is_file():
                    continue
                run_id, new = tracker.job_run(row, job_dir, parent)
                created += new
                if not new:
                    tracker.log_values(run_id, row)
                if recommended is not None and str(row[Col.JOB_DIR]) == recommended:
                    tracker.client.set_tag(run_id, RECOMMENDED_TAG, "true")
                if single and target.artifacts:
                    for name in SWEEP_ARTIFACTS:
                        if (sweep_dir / name).is_file():
                            tracker.client.log_artifact(run_id, str(sweep_dir / name))
            if parent is not None:
                tracker.client.set_tag(parent, RECOMMENDED_TAG, recommended or "none meets the constraints")
                tracker.finish_sweep(parent, sweep_dir, frame)
            what = f"parent run {parent}" if parent else "1 run"
            print(f"tracked: MLflow {target.uri}, experiment {target.experiment!r}, {what} ({created} new)")
            return parent
    except Exception as exc:
        note = _not_tracked(target, exc, sweep_dir)
        print(f"warning: {note}", file=sys.stderr)
        if is_single_run(sweep_dir):  # its row says so too
            _note_on_record(sweep_dir, note)
        return None
