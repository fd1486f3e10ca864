"""`logger=mlflow`: every job an MLflow run, every sweep a parent run with its jobs nested under it.

Everything is logged from the records on disk (a job's result.json, a sweep's results table), so a job logs from
wherever a launcher ran it, a crash or a resume still yields correct runs, and `python -m unet_pipeline.results
<dir> --log` logs an existing sweep after the fact. A run is found again by a tag naming the job's attempt
(`unet_pipeline.record_uid`: config identity, host, pid, start time), so a job that resume skips, or a sweep
logged twice, creates no second run. Tracking never costs a result: a server that is down, slow or refuses
gives a warning and a note on the job's row, and the record, the table and the exit status stay as they were."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from unet_pipeline.core import one_line, write_json
from unet_pipeline.record import RESULT_FILE
from unet_pipeline.report.tracking_fields import (
    job_metrics,
    job_params,
    job_tags,
    machine,
    record_uid,
    run_name,
    sweep_tags,
)

log = logging.getLogger(__name__)
UID_TAG, SWEEP_TAG = "unet_pipeline.record_uid", "unet_pipeline.sweep_dir"
INSTALL_HINT = 'logger=mlflow needs MLflow: pip install ".[mlflow]" (or pip install mlflow), or use logger=none'
STATUS = {"completed": "FINISHED", "planned": "FINISHED", "failed": "FAILED"}  # else (killed, missing): KILLED
JOB_ARTIFACT_DIRS = (".hydra", "masks", "overlays")
SWEEP_ARTIFACTS = ("results.md", "results.csv", "pareto.png", "pareto_full_res.png", "per_image_vs_fp32.csv")


class TrackingError(Exception):
    """Why a job or sweep could not be logged (one line)."""


@dataclass(frozen=True)
class Target:
    """Where runs go: the resolved tracking URI and experiment, and how long the server may take."""

    uri: str
    experiment: str
    timeout_s: float = 10.0
    retries: int = 1
    artifacts: bool = True

    @classmethod
    def of(cls, logger_cfg: Any, choices: Mapping[str, Any] | None, model_name: str) -> Target | None:
        """None for logger=none. tracking_uri: the config's, else $MLFLOW_TRACKING_URI, else a SQLite store under
        outputs/; experiment: the config's, else the experiment overlay's name, else the model's."""
        if logger_cfg is None or str(getattr(logger_cfg.name, "value", logger_cfg.name)) == "none":
            return None
        experiment = logger_cfg.experiment or (choices or {}).get("experiment") or model_name
        return cls(
            uri=logger_cfg.tracking_uri or default_uri(),
            experiment=str(experiment),
            timeout_s=float(logger_cfg.timeout_s),
            retries=int(logger_cfg.retries),
            artifacts=bool(logger_cfg.artifacts),
        )


def installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("mlflow") is not None


def target_for_dir(root: Path, frame: pd.DataFrame, uri: str | None, experiment: str | None) -> Target | None:
    """Where `results <dir> --log` logs: the given URI / experiment, else what the jobs were configured with
    (a record's logger settings, the experiment overlay Hydra recorded), else the defaults; None without MLflow."""
    if not installed():
        return None
    recorded = _recorded_logger(root)
    models = [m for m in frame.get("job.model", []) if isinstance(m, str)]
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


def _hydra_select(root: Path, key: str) -> Any:
    """A value Hydra recorded for the sweep (multirun.yaml) or the run (.hydra/hydra.yaml), or None."""
    from omegaconf import OmegaConf

    for path in (root / "multirun.yaml", root / ".hydra" / "hydra.yaml"):
        if path.is_file():
            value = OmegaConf.select(OmegaConf.load(path), key)
            return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return None


def _hydra_choice(root: Path, group: str) -> str | None:
    """The option Hydra recorded for a config group, e.g. the experiment overlay's name."""
    choice = _hydra_select(root, f"hydra.runtime.choices.{group}")
    return str(choice) if choice not in (None, "null") else None


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"


@contextlib.contextmanager
def _client_settings(target: Target) -> Iterator[None]:
    """MLflow's HTTP timeout and retries bounded by the logger config (its defaults, 120 s x 7 retries with
    backoff, would hold a job for minutes on a dead server); its run-URL prints and store INFO lines off."""
    settings = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(target.timeout_s))),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(target.retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    }
    saved = {key: os.environ.get(key) for key in settings}
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    os.environ.update(settings)
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class Tracker:
    """A connection to one tracking server (or store) and experiment; raises TrackingError, never anything else."""

    def __init__(self, target: Target) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise TrackingError(INSTALL_HINT) from None
        self.target = target
        self._check_server()
        self.client = MlflowClient(tracking_uri=target.uri)
        experiment = self.client.get_experiment_by_name(target.experiment)
        if experiment is not None:
            self.experiment_id = experiment.experiment_id
        else:
            local = target.uri.startswith("sqlite:") or target.uri.startswith("file:")
            location = (Path.cwd() / "outputs" / "mlartifacts").as_uri() if local else None
            self.experiment_id = self.client.create_experiment(target.experiment, artifact_location=location)

    def _check_server(self) -> None:
        """One quick request first, so a server that is down costs one timeout, not MLflow's retries."""
        if not self.target.uri.startswith(("http://", "https://")):
            return
        import requests

        try:
            answer = requests.get(f"{self.target.uri.rstrip('/')}/health", timeout=self.target.timeout_s)
        except requests.RequestException as exc:
            raise TrackingError(f"no MLflow server answers at {self.target.uri} ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise TrackingError(f"MLflow server at {self.target.uri} answered {answer.status_code} to /health")

    def find(self, tag: str, value: str) -> str | None:
        """The run id tagged tag=value in the experiment (the oldest, if a race made two), or None."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{tag}` = '{value}'", order_by=["attributes.start_time ASC"]
        )
        return runs[0].info.run_id if runs else None

    def sweep_run(self, sweep_dir: Path) -> str:
        """The sweep's parent run, created on first use and marked running."""
        sweep = str(sweep_dir.resolve())
        run_id = self.find(SWEEP_TAG, sweep)
        if run_id is None:
            tags = {SWEEP_TAG: sweep, "unet_pipeline.kind": "sweep"}
            run = self.client.create_run(self.experiment_id, run_name=f"sweep {sweep_dir.name}", tags=tags)
            run_id = run.info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        return run_id

    def job_run(self, row: Mapping[str, Any], job_dir: Path, parent: str | None) -> tuple[str, bool]:
        """(run id, created): the job's run, logged in full from its row the first time it is seen."""
        uid = record_uid(row)
        found = self.find(UID_TAG, uid)
        if found is not None:
            return found, False
        tags = {**job_tags(row, job_dir), UID_TAG: uid, "unet_pipeline.kind": "job"}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = self.client.create_run(
            self.experiment_id, run_name=run_name(row, job_dir), start_time=_millis(row.get("started_at")), tags=tags
        )
        run_id = run.info.run_id
        self.log_values(run_id, row, params=True)
        if self.target.artifacts:
            self._job_artifacts(run_id, job_dir)
        end = _millis(row.get("finished_at"))
        self.client.set_terminated(run_id, status=STATUS.get(str(row.get("status")), "KILLED"), end_time=end)
        return run_id, True

    def log_values(self, run_id: str, row: Mapping[str, Any], params: bool = False) -> None:
        """Metrics (and, the first time, params) of one row; the same row logged again adds nothing."""
        from mlflow.entities import Metric, Param, RunTag

        stamp = _millis(row.get("finished_at")) or 0
        metrics = [Metric(k, v, stamp, 0) for k, v in job_metrics(row).items()]
        tags = [RunTag(k, v) for k, v in sweep_tags(row).items()]
        values = [Param(k, v) for k, v in job_params(row).items()] if params else []
        for start in range(0, max(len(metrics), 1), 1000):  # MLflow's batch limits
            self.client.log_batch(
                run_id, metrics=metrics[start : start + 1000], params=values if not start else [], tags=tags
            )

    def _job_artifacts(self, run_id: str, job_dir: Path) -> None:
        for path in sorted(job_dir.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.client.log_artifact(run_id, str(path))
        for name in JOB_ARTIFACT_DIRS:
            if (job_dir / name).is_dir():
                self.client.log_artifacts(run_id, str(job_dir / name), artifact_path=name.lstrip("."))

    def finish_sweep(self, run_id: str, sweep_dir: Path, frame: pd.DataFrame) -> None:
        """The sweep's counts, command-line overrides, machines, tables and plots; then it ends."""
        from mlflow.entities import Metric, RunTag

        completed = int(frame["status"].isin(("completed", "planned")).sum())
        now = int(dt.datetime.now().timestamp() * 1000)
        counts = {"jobs": len(frame), "jobs_completed": completed, "jobs_not_completed": len(frame) - completed}
        tags = {"overrides": " ".join(_hydra_select(sweep_dir, "hydra.overrides.task") or [])}
        machines = sorted({machine(row) for row in _rows(frame) if row.get("machine.cpu_model")})
        if machines:
            tags["machine"] = "; ".join(machines)
        metrics = [Metric(k, v, now, 0) for k, v in counts.items()]
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        if self.target.artifacts:
            for name in SWEEP_ARTIFACTS:
                if (sweep_dir / name).is_file():
                    self.client.log_artifact(run_id, str(sweep_dir / name))
        status = "FINISHED" if completed == len(frame) else "FAILED"
        self.client.set_terminated(run_id, status=status, end_time=now)


def _millis(stamp: Any) -> int | None:
    try:
        return int(dt.datetime.fromisoformat(str(stamp)).timestamp() * 1000)
    except ValueError:
        return None


def is_single_run(path: Path) -> bool:
    """A single run's dir (its job is the only run, no parent) rather than a sweep's."""
    return (path / RESULT_FILE).is_file()


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def _note_on_record(job_dir: Path, note: str) -> None:
    """The job's row says it was not tracked; nothing else in its record changes."""
    path = job_dir / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    notes = [n for n in record.get("notes") or [] if not str(n).startswith("not tracked:")]
    record["notes"] = [*notes, note]
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
        with _client_settings(target):
            tracker = Tracker(target)
            parent = tracker.sweep_run(sweep_dir) if sweep_dir is not None else None
            (row,) = _rows(to_frame(load_records(job_dir)))
            return tracker.job_run(row, job_dir, parent)[0]
    except Exception as exc:  # tracking never costs a result
        note = _not_tracked(target, exc, sweep_dir or job_dir)
        log.warning(note)
        _note_on_record(job_dir, note)
        return None


def open_sweep(target: Target, sweep_dir: Path) -> str | None:
    """The sweep's parent run, before its jobs start (so parallel jobs find it); None where it cannot be made."""
    try:
        with _client_settings(target):
            return Tracker(target).sweep_run(sweep_dir)
    except Exception as exc:
        log.warning(_not_tracked(target, exc, sweep_dir))
        return None


def track_sweep(target: Target, sweep_dir: Path, frame: pd.DataFrame) -> str | None:
    """After the sweep's table: every job's run (created from disk where a job could not log itself) gets the
    sweep's comparisons; the parent run gets the tables and plots and ends. A one-line warning, never a raise."""
    try:
        with _client_settings(target):
            tracker = Tracker(target)
            single = is_single_run(sweep_dir)
            parent = None if single else tracker.sweep_run(sweep_dir)
            created = 0
            for row in _rows(frame):
                job_dir = sweep_dir if single else sweep_dir / str(row["job_dir"])
                if not (job_dir / RESULT_FILE).is_file():
                    continue
                run_id, new = tracker.job_run(row, job_dir, parent)
                created += new
                if not new:
                    tracker.log_values(run_id, row)
                if single and target.artifacts:
                    for name in SWEEP_ARTIFACTS:
                        if (sweep_dir / name).is_file():
                            tracker.client.log_artifact(run_id, str(sweep_dir / name))
            if parent is not None:
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
