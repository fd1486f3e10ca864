"""`python -m unet_pipeline` with no arguments on a fresh machine: synthetic demo data, bundled weights."""

from __future__ import annotations

import json

from unet_pipeline.report.summary import WIDTH

from .conftest import run_cli


def test_no_argument_run_works_anywhere(tmp_path):
    env = {"CARVANA_DATASETS_PATH": ""}  # nothing from the environment: the demo must stand alone
    proc = run_cli("progress=false", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    record = json.loads((run_dir / "result.json").read_text())
    assert record["job"]["model"] == "unet_demo" and record["data"]["root"] == "outputs/demo_data"
    assert record["metrics"]["num_images"] == 24
    assert record["metrics"]["dice"] >= 0.97
    assert proc.stdout.startswith("ran: unet_demo · openvino") and "force_float32" in proc.stdout
    # it reads in a 100-column terminal; the wide table stays on disk
    out = (proc.stdout + proc.stderr).replace("\r", "\n").splitlines()
    too_wide = [line for line in out if len(line) > WIDTH and not line.startswith(("full table:", "record:"))]
    assert not too_wide, too_wide
    assert f"record: {run_dir.resolve() / 'result.json'}" in proc.stdout
    assert (run_dir / "results.md").read_text().count("| unet_demo") == 1
    # the generated data is reused, never regenerated, on the next run
    marker = next((tmp_path / "outputs" / "demo_data").glob(".complete-v*"))
    again = run_cli(
        "progress=false",
        "precision=qint8_mixed_float32",
        "dry_run=true",  # plans from the evaluation and calibration images: this run checks the data is reused
        cwd=tmp_path,
        env=env,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert marker.is_file()
