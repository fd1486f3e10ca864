"""logger=mlflow against a real MLflow tracking server on 127.0.0.1 (SQLite in a temp dir, tests/tracking_server.py),
read back with MLflow's own client: a sweep is a parent run with its jobs nested, re-running it duplicates nothing,
a failed job is a FAILED run, and a server that is down or dies mid-sweep costs no result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import run_cli, tiny_overrides

mlflow = pytest.importorskip("mlflow", reason='MLflow not installed: pip install ".[mlflow]"')
from mlflow import MlflowClient  # noqa: E402

from unet_pipeline import preflight  # noqa: E402
from unet_pipeline.report import tracking  # noqa: E402

from .tracking_server import free_port, mlflow_server, stop  # noqa: E402


@pytest.fixture
def server(tracking_server) -> str:
    return tracking_server


def runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def logger(uri: str, experiment: str) -> list[str]:
    return ["logger=mlflow", f"logger.tracking_uri={uri}", f"logger.experiment={experiment}", "logger.timeout_s=3"]


def test_a_sweep_is_a_parent_run_with_nested_jobs_and_a_rerun_adds_none(sweep_2x2):
    """The session's 2x2 sweep (conftest.py), logged to the session's server as it ran."""
    server, sweep = sweep_2x2.tracking_uri, sweep_2x2.dir
    assert "tracked: MLflow" in sweep_2x2.stdout
    found = runs(server, sweep_2x2.experiment)
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["jobs_completed"] == 4
    assert "precision=force_float32,qint8_mixed_float32" in parent.data.tags["overrides"]
    client = MlflowClient(server)
    assert {"results.md", "results.csv", "pareto.png", "recommendation.md"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    chosen = json.loads((sweep / "recommendation.json").read_text())["chosen"]
    recommended = parent.data.tags["unet_pipeline.recommended"]  # the chosen job, or that none met the constraints
    assert recommended == (chosen["job"] if chosen else "none meets the constraints")
    tagged = [c for c in children if c.data.tags.get("unet_pipeline.recommended") == "true"]
    assert len(tagged) == (1 if chosen else 0)
    table = pd.read_csv(sweep / "results.csv").set_index(["job.precision", "job.batch"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        params, metrics = child.data.params, child.data.metrics
        row = table.loc[(params["precision"], int(params["batch"]))]
        assert params["engine"] == "openvino" and params["resize"] == row["job.resize"] and params["checkpoint_sha256"]
        assert metrics["metrics.dice"] == pytest.approx(row["metrics.dice"])
        assert metrics["benchmark.engine.throughput_ips"] == pytest.approx(row["benchmark.engine.throughput_ips"])
        assert "benchmark.engine.latency_ms.p99" in metrics and "benchmark.end_to_end.throughput_ips" in metrics
        assert metrics["dice_delta_vs_fp32"] == pytest.approx(row["dice_delta_vs_fp32"])  # the sweep's comparison
        if params["precision"] != "force_float32":
            assert "dice_delta_ci_low" in metrics and "dice_delta_distinguishable" in child.data.tags
        assert {"result.json", "per_image.csv", "hydra"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
        assert child.data.tags["status"] == "completed" and child.data.tags["machine"].endswith(os.uname().nodename)

    again = run_cli(*sweep_2x2.args, cwd=sweep_2x2.cwd)  # resume skips every job: no second run of any
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(0 new)" in again.stdout
    assert sorted(r.info.run_id for r in runs(server, sweep_2x2.experiment)) == sorted(r.info.run_id for r in found)


def test_a_failed_job_is_a_failed_run_with_its_error(server, tmp_path, tiny_dataset, tiny_checkpoint):
    run_dir = tmp_path / "run"
    args = ["engine=torch", "precision=qint8_mixed_float16", f"hydra.run.dir={run_dir}", *logger(server, "failing")]
    proc = run_cli(*args, *tiny_overrides(tiny_dataset, tiny_checkpoint), cwd=tmp_path)
    assert proc.returncode == 1
    record = json.loads((run_dir / "result.json").read_text())
    (run,) = runs(server, "failing")
    assert record["status"] == "failed" and run.info.status == "FAILED"
    assert run.data.tags["error"] == record["error"] and run.data.tags["status"] == "failed"


def test_an_unreachable_server_costs_nothing_but_a_note(tmp_path, tiny_dataset, tiny_checkpoint, monkeypatch):
    run_dir = tmp_path / "run"
    dead = f"http://127.0.0.1:{free_port()}"
    args = [f"hydra.run.dir={run_dir}", "benchmark.enabled=false", *logger(dead, "x")]
    proc = run_cli(*args, *tiny_overrides(tiny_dataset, tiny_checkpoint), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((run_dir / "result.json").read_text())
    assert record["status"] == "completed" and record["metrics"]["dice"] is not None
    (note,) = [n for n in record["notes"] if n.startswith("not tracked:")]
    assert dead in note and f"python -m unet_pipeline.results {run_dir} --log" in note
    assert "not tracked" in (run_dir / "results.md").read_text() and "not tracked" in proc.stderr

    # logged after the fact into a local store (SQLite under ./outputs, where the default points)
    monkeypatch.chdir(tmp_path)
    from unet_pipeline import results

    store = f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}"
    assert results.main([str(run_dir), "--log", "--tracking-uri", store]) == 0
    (run,) = runs(store, "x")  # the experiment the job was configured with
    assert run.info.status == "FINISHED" and run.data.metrics["metrics.dice"] == pytest.approx(
        record["metrics"]["dice"]
    )
    assert (tmp_path / "outputs" / "mlartifacts").is_dir()


def test_logger_mlflow_without_mlflow_is_one_line_naming_the_install(monkeypatch):
    monkeypatch.setattr(tracking, "installed", lambda: False)
    assert preflight.check(["logger=mlflow"], "pipeline") == tracking.INSTALL_HINT
    assert 'pip install ".[mlflow]"' in tracking.INSTALL_HINT


def test_where_runs_go_by_default(compose_cfg, monkeypatch):
    cfg = compose_cfg(["logger=mlflow"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    target = tracking.Target.of(cfg.logger, {"experiment": "int8_every_cpu"}, cfg.model.name)
    assert target.uri == "http://tracker:5000" and target.experiment == "int8_every_cpu"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    target = tracking.Target.of(cfg.logger, {"experiment": None}, cfg.model.name)
    assert target.uri == f"sqlite:///{Path.cwd() / 'outputs' / 'mlflow.db'}" and target.experiment == "unet_demo"
    assert tracking.Target.of(compose_cfg([]).logger, {}, "m") is None  # logger=none, the default


@pytest.mark.slow  # ~60 s, a server of its own; an unreachable server and logging afterwards stay in the default suite
def test_a_server_killed_mid_sweep_leaves_every_record_and_the_table(server, tmp_path, tiny_dataset, tiny_checkpoint):
    sweep = tmp_path / "sweep"
    with mlflow_server(tmp_path / "doomed") as (uri, proc):
        args = ["-m", "batch=1,2", "benchmark.enabled=false", f"hydra.sweep.dir={sweep}",
                *tiny_overrides(tiny_dataset, tiny_checkpoint), *logger(uri, "doomed")]  # fmt: skip
        sweep_proc = subprocess.Popen([sys.executable, "-m", "unet_pipeline", *args], cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not any("mlflow.parentRunId" in r.data.tags and r.info.status == "FINISHED" for r in runs(uri, "doomed")):
            assert sweep_proc.poll() is None and time.monotonic() < deadline, "no job was logged"
            time.sleep(0.5)
        stop(proc)  # killed once the first job is wholly logged (its run ended)
        _, err = sweep_proc.communicate(timeout=600)
    assert sweep_proc.returncode == 0, err[-2000:]
    records = [json.loads((sweep / str(n) / "result.json").read_text()) for n in range(2)]
    assert [r["status"] for r in records] == ["completed"] * 2
    assert [any(n.startswith("not tracked:") for n in r["notes"]) for r in records] == [False, True]
    table = pd.read_csv(sweep / "results.csv")
    assert len(table) == 2 and "not tracked" in table.loc[1, "notes"] and "warning: not tracked" in err

    # the whole sweep, logged after the fact to a server that is up (the session's)
    after = run_cli(str(sweep), "--log", "--tracking-uri", server, "--experiment", "after", cwd=tmp_path,
                    module="unet_pipeline.results")  # fmt: skip
    assert after.returncode == 0, after.stderr[-2000:]
    found = runs(server, "after")
    assert len(found) == 3 and sum("mlflow.parentRunId" in r.data.tags for r in found) == 2
