"""The command line as users type it: single runs, -m sweeps, tables, exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import run_cli, tiny_overrides


def sweep_dir(cwd: Path) -> Path:
    (found,) = (cwd / "outputs" / "multirun").iterdir()
    return found


def test_sweep_writes_one_row_per_job_with_both_dice_and_their_intervals(sweep_2x2):
    table = pd.read_csv(sweep_2x2.dir / "results.csv")
    assert list(zip(table["job.precision"], table["job.batch"], strict=True)) == [
        ("force_float32", 1), ("force_float32", 2), ("qint8_mixed_float32", 1), ("qint8_mixed_float32", 2)
    ]  # fmt: skip
    assert table["metrics.dice"].between(0, 1).all() and (table["status"] == "completed").all()
    markdown = (sweep_2x2.dir / "results.md").read_text()
    assert "force_float32" in markdown and "qint8_mixed_float32" in markdown and "int8" in markdown
    assert "4 jobs, 4 completed" in markdown
    # model- and full-resolution Dice, each delta with its paired interval and whether it excludes zero
    assert table["metrics.dice_full"].between(0, 1).all() and "dice full res" in markdown
    for _, int8 in table[table["job.precision"] == "qint8_mixed_float32"].iterrows():
        assert int8["dice_delta_ci_low"] <= int8["dice_delta_vs_fp32"] <= int8["dice_delta_ci_high"]
        assert int8["dice_full_delta_ci_low"] <= int8["dice_full_delta_vs_fp32"] <= int8["dice_full_delta_ci_high"]
        assert isinstance(int8["dice_delta_distinguishable"], bool | np.bool_)
    assert "Δ dice vs fp32 [95 % CI]" in markdown and "Δ full res [95 % CI]" in markdown


def test_failing_job_is_a_row_and_the_sweep_exits_nonzero(tmp_path, tiny_dataset, tiny_checkpoint):
    """An unsupported precision and a batch larger than the images: each a failed row with its one line, the
    job that can run completes, and the sweep exits 1 at the end."""
    proc = run_cli(
        "-m",
        "precision=qint16_mixed_float32,force_float32",
        "batch=1,64",
        *tiny_overrides(tiny_dataset, tiny_checkpoint),
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "3 of 4 jobs did not complete" in proc.stderr
    table = pd.read_csv(sweep_dir(tmp_path) / "results.csv")
    assert list(table["status"]) == ["failed", "failed", "completed", "failed"]
    assert "does not support precision=qint16_mixed_float32" in table["error"][0]
    assert "batch=64" in table["error"][3]
    assert table["metrics.dice"][2] >= 0


def test_aggregator_runs_on_its_own_and_survives_a_broken_record(sweep_2x2, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_2x2.dir, sweep)
    (sweep / "results.md").unlink()
    proc = run_cli(str(sweep), module="unet_pipeline.results", cwd=tmp_path)
    assert proc.returncode == 0 and (sweep / "results.md").is_file()
    (sweep / "1" / "result.json").write_text('{"status": "compl')  # truncated on disk
    proc = run_cli(str(sweep), module="unet_pipeline.results", cwd=tmp_path)
    assert proc.returncode == 1
    table = pd.read_csv(sweep / "results.csv")
    assert list(table["status"]) == ["completed", "unreadable", "completed", "completed"]


def test_single_run_error_is_one_line(tmp_path, tiny_dataset, tiny_checkpoint):
    proc = run_cli(*tiny_overrides(tiny_dataset, tiny_checkpoint), "model.checkpoint=missing.pth", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: checkpoint not found: missing.pth (set model.checkpoint=<path to a .pth state_dict>)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_unknown_option_lists_the_choices(tmp_path):
    proc = run_cli("precision=fp17", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Could not find 'precision/fp17'" in proc.stderr
    assert "qint8_mixed_float16" in proc.stderr and "Traceback" not in proc.stderr


def test_user_config_group_via_searchpath(tmp_path, tiny_dataset, tiny_checkpoint):
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "mine.yaml").write_text("name: mine\nbase_width: 4\nscale: 1.0\n")
    proc = run_cli("model=mine", f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "--cfg", "job", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "name: mine" in proc.stdout


@pytest.mark.slow  # ~38 s; every engine is also checked by test_agreement.py
def test_one_sweep_across_engines(tmp_path, tiny_dataset, tiny_checkpoint):
    proc = run_cli(
        "-m",
        "engine=openvino,onnxruntime,torch",
        "precision=force_float32,qint8_mixed_float16",
        *tiny_overrides(tiny_dataset, tiny_checkpoint),
        cwd=tmp_path,
    )
    assert proc.returncode == 1  # torch has no int8: a failed row, not a crash
    table = pd.read_csv(sweep_dir(tmp_path) / "results.csv")
    assert len(table) == 6
    failed = table[table["status"] == "failed"]
    assert list(zip(failed["job.engine"], failed["job.precision"], strict=True)) == [("torch", "qint8_mixed_float16")]
    fp32 = table[table["job.precision"] == "force_float32"]["metrics.dice"]
    assert fp32.max() - fp32.min() < 1e-4


def test_sweep_table_has_speed_columns_and_a_pareto_plot(sweep_2x2):
    sweep = sweep_2x2.dir
    table = pd.read_csv(sweep / "results.csv")
    fp32 = table[table["job.precision"] == "force_float32"]
    assert (fp32["speedup_vs_fp32"] == 1.0).all() and (fp32["dice_delta_vs_fp32"] == 0.0).all()
    int8 = table[table["job.precision"] == "qint8_mixed_float32"].set_index("job.batch")
    ref = fp32.set_index("job.batch")
    for batch in (1, 2):  # compared with the fp32 row of the same batch
        assert int8.loc[batch, "speedup_vs_fp32"] == pytest.approx(
            int8.loc[batch, "benchmark.engine.throughput_ips"] / ref.loc[batch, "benchmark.engine.throughput_ips"]
        )
    markdown = (sweep / "results.md").read_text()
    assert "p50 ms" in markdown and "speed-up vs fp32" in markdown and "](pareto.png)" in markdown
    assert "](pareto_full_res.png)" in markdown  # the same plot with the full-resolution Dice
    for plot in ("pareto.png", "pareto_full_res.png"):
        assert (sweep / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_full_resolution_plot_without_full_resolution_dice(tmp_path):
    from unet_pipeline.report.plots import FULL_RES_PLOT_FILE, PLOT_FILE, plot_pareto

    frame = pd.DataFrame(
        {
            "job_dir": ["a", "b"],
            "job.engine": ["openvino"] * 2,
            "job.precision": ["force_float32", "qint8_mixed_float32"],
            "job.batch": [1, 1],
            "benchmark.engine.throughput_ips": [10.0, 20.0],
            "metrics.dice": [0.99, 0.98],
            "metrics.dice_full": [np.nan, np.nan],  # metrics.full_resolution=false
            **{f"{p}_delta_{e}": [np.nan] * 2 for p in ("dice", "dice_full") for e in ("vs_fp32", "ci_low", "ci_high")},
        }
    )
    assert not plot_pareto(frame, tmp_path / FULL_RES_PLOT_FILE, tmp_path)
    assert not (tmp_path / FULL_RES_PLOT_FILE).exists()
    assert plot_pareto(frame, tmp_path / PLOT_FILE, tmp_path) and (tmp_path / PLOT_FILE).exists()
