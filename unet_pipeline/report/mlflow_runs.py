"""MLflow's side of tracking: where runs go (`Target`), one connection to a server or store (`Tracker`: finds a
run again by its tag, creates job and sweep runs, logs values and artifacts), and MLflow's HTTP limits bounded by
the logger config. `tracking` decides what is logged when; this module only talks to MLflow."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from unet_pipeline.report.columns import Col
from unet_pipeline.report.tracking_fields import (
    job_metrics,
    job_params,
    job_tags,
    machine,
    record_uid,
    run_name,
    sweep_tags,
)

UID_TAG, SWEEP_TAG = "unet_pipeline.record_uid", "unet_pipeline.sweep_dir"
INSTALL_HINT = 'logger=mlflow needs MLflow: pip install ".[mlflow]" (or pip install mlflow), or use logger=none'
STATUS = {"completed": "FINISHED", "planned": "FINISHED", "failed": "FAILED"}  # else (killed, missing): KILLED
JOB_ARTIFACT_DIRS = (".hydra", "masks", "overlays")
SWEEP_ARTIFACTS = (
    "recommendation.md",
    "recommendation.json",
    "results.md",
    "results.csv",
    "pareto.png",
    "pareto_full_res.png",
    "per_image_vs_fp32.csv",
)


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


def hydra_select(root: Path, key: str) -> Any:
    """A value Hydra recorded for the sweep (multirun.yaml) or the run (.hydra/hydra.yaml), or None."""
    from omegaconf import OmegaConf

    for path in (root / "multirun.yaml", root / ".hydra" / "hydra.yaml"):
        if path.is_file():
            value = OmegaConf.select(OmegaConf.load(path), key)
            return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return None


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}"


@contextlib.contextmanager
def client_settings(target: Target) -> Iterator[None]:
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
            self.experiment_id, run_name=run_name(row, job_dir), start_time=_millis(row.get(Col.STARTED_AT)), tags=tags
        )
        run_id = run.info.run_id
        self.log_values(run_id, row, params=True)
        if self.target.artifacts:
            self._job_artifacts(run_id, job_dir)
        end = _millis(row.get(Col.FINISHED_AT))
        self.client.set_terminated(run_id, status=STATUS.get(str(row.get(Col.STATUS)), "KILLED"), end_time=end)
        return run_id, True

    def log_values(self, run_id: str, row: Mapping[str, Any], params: bool = False) -> None:
        """Metrics (and, the first time, params) of one row; the same row logged again adds nothing."""
        from mlflow.entities import Metric, Param, RunTag

        stamp = _millis(row.get(Col.FINISHED_AT)) or 0
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

        completed = int(frame[Col.STATUS].isin(("completed", "planned")).sum())
        now = int(dt.datetime.now().timestamp() * 1000)
        counts = {"jobs": len(frame), "jobs_completed": completed, "jobs_not_completed": len(frame) - completed}
        tags = {"overrides": " ".join(hydra_select(sweep_dir, "hydra.overrides.task") or [])}
        machines = sorted({machine(row) for row in frame_rows(frame) if row.get(Col.CPU_MODEL)})
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


def frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")
