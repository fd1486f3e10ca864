"""What a user sees in a terminal: a summary in 100 columns, the project's own --help, one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from unet_pipeline.report import tables as results
from unet_pipeline.report.summary import WIDTH, summary

from .conftest import run_cli


def _record(job: str, engine: str, precision: str, dice: float, **extra) -> dict:
    return {
        "job_dir": job,
        "status": "completed",
        "error": None,
        "notes": extra.pop("notes", []),
        "job": {
            "model": "unet_carvana_small",
            "engine": engine,
            "engine_version": "1.0",
            "precision": precision,
            "batch": extra.pop("batch", 1),
            "shape": "static",
            "input_size": [320, 479],
            "overrides": extra.pop("overrides", []),
        },
        "metrics": {"dice": dice, "num_images": 96},
        "benchmark": {
            "engine": {
                "iterations": extra.pop("calls", 40),
                "capped": extra.pop("capped", False),
                "latency_ms": {"p50": 71.7, "p99": 102.4},
                "throughput_ips": 13.2,
            },
            "end_to_end": {"throughput_ips": 10.3},
        },
        "machine": {"cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "fma"], "platform": "Linux-6-x86_64-with-glibc"},
    }


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_sweep_summary_shows_what_differs_one_line_per_job(tmp_path):
    frame = results.to_frame(
        [
            _record("0", "onnxruntime", "force_float32", 0.991285),
            _record("1", "onnxruntime", "qint8_mixed_float32", 0.991274, calls=2, capped=True),
            _record("2", "openvino", "force_float32", 0.991285),
            _record("3", "openvino", "qint8_mixed_float32", 0.991309),
        ]
    )
    text = summary(frame, tmp_path)
    lines = _lines(text)
    assert (
        lines[0] == "ran: unet_carvana_small · onnxruntime 1.0, openvino 1.0 · batch 1 · static · 320x479 · 96 images ·"
    )
    assert lines[1] == "     on AMD EPYC (avx2)"
    header = lines[3].split()
    assert header[:3] == ["job", "engine", "precision"] and "model" not in header and "status" not in header
    rows = lines[5:9]
    assert rows[1].split()[:5] == ["1", "onnxruntime", "qint8_mixed_float32", "0.9913", "-0.00001"]
    assert rows[1].endswith("2 cap") and rows[0].endswith(" 40")
    assert (
        "4 jobs, all completed" in text
        and lines[-1] == f"full table: {tmp_path / 'results.md'} (every field: results.csv)"
    )
    assert max(map(len, lines[:-1])) <= WIDTH  # paths excepted


def test_long_values_are_shortened_to_fit_and_notes_folded(tmp_path):
    long_recipe = ["recipe=int8_no_overflow_fix", "calibration.method=percentile", "hydra.sweep.dir=x"]
    records = [
        _record("unet_carvana_small-cpu/0", "onnxruntime", "qint8_mixed_bfloat16", 0.99, overrides=long_recipe),
        _record("unet_carvana_small-cpu/1", "openvino", "qint16_mixed_float16", 0.98, batch=16, notes=["a note " * 30]),
    ]
    records[1]["status"], records[1]["error"] = "failed", "boom"
    text = summary(results.to_frame(records), tmp_path)
    lines = _lines(text)
    assert max(len(line) for line in lines if not line.startswith("full table")) <= WIDTH
    assert "status" in lines[3] and lines[-2] == "2 jobs, 1 completed, 1 not (see status)"
    assert "…" in text and "-cpu/1" in text  # job names keep their ends
    assert any(line.startswith("note: unet_carvana_small-cpu/1: a note") for line in lines)


def test_a_single_run_has_no_job_column_and_says_where_its_record_is(tmp_path):
    text = summary(results.to_frame([_record(".", "openvino", "force_float32", 0.9909)]), tmp_path)
    lines = _lines(text)
    assert "force_float32" in lines[0] and lines[3].split()[0] == "dice" and lines[5].split()[-1] == "completed"


def test_help_is_the_projects_own(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("unet_pipeline: ") and "powered by Hydra" not in text and "schema" not in text
    assert text.count("\n  python -m unet_pipeline") >= 3 and "outputs/multirun/<time>/" in text
    conf = Path(__file__).resolve().parents[1] / "conf"
    for group in (d.name for d in conf.iterdir() if d.is_dir() and d.name not in ("hydra", "train", "__pycache__")):
        assert f"\n  {group} " in text, group
    assert "train/experiment" not in text and "unet_carvana_medium_640_shuffle_ema" not in text
    assert "force_float32 (default)" in text and "int8_no_overflow_fix" in text
    assert max(map(len, text.splitlines())) <= WIDTH
    train = run_cli("--help", cwd=tmp_path, module="unet_pipeline.train")
    assert train.stdout.startswith("unet_pipeline.train: ") and "precision" not in train.stdout
    assert "\n  train/experiment " in train.stdout and "unet_carvana_medium_640_shuffle_ema" in train.stdout
    assert "sample_eval" not in train.stdout and max(map(len, train.stdout.splitlines())) <= WIDTH
    validate = run_cli("--help", cwd=tmp_path, module="unet_pipeline.validate")
    assert validate.stdout.startswith("unet_pipeline.validate: ") and "outputs/validate/<time>/" in validate.stdout
    assert "unet_carvana_medium_640_shuffle_ema" in validate.stdout
    assert max(map(len, validate.stdout.splitlines())) <= WIDTH


@pytest.mark.parametrize(
    ("module", "entry"),
    [("unet_pipeline.train", "unet_pipeline.train"), ("unet_pipeline.validate", "unet_pipeline.validate"),
     ("unet_pipeline", "unet_pipeline.train")],
)  # fmt: skip
def test_the_old_training_overlay_spelling_names_the_new_one(tmp_path, module, entry):
    """`+experiment=train_<name>` (before training overlays had their own group) fails in one line naming
    `train/experiment=<name>`, and writes nothing."""
    proc = run_cli("+experiment=train_unet_demo", cwd=tmp_path, module=module)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert f"python -m {entry} train/experiment=unet_demo" in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_a_bad_data_root_is_one_line_and_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for root, what in ((tmp_path / "nonexistent", "does not exist"), (empty, "is empty")):
        proc = run_cli(f"data.root={root}", cwd=tmp_path)
        assert proc.returncode == 1 and proc.stdout == ""
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"error: data.root={root} {what}") and "pick model=unet_carvana_small" in line
    assert not (tmp_path / "nonexistent").exists() and not any(empty.iterdir())
    assert not (tmp_path / "outputs").exists()  # refused before any run dir was made
