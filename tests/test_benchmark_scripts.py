"""The benchmark scripts run end to end and print their ratio tables (slow: several sweeps)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO, needs_carvana

QUICK = [
    "model=unet_demo",
    "data.num_images=4",
    "benchmark.min_seconds=0.3",
    "benchmark.iterations=3",
    "calibration.num_samples=8",
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("perf.py", "x vs fp32 b1"),
        ("engines.py", "x PyTorch eager fp32"),
        ("vs_benchmark_app.py", "img/s benchmark_app"),
        ("pipeline.py", "e2e / engine warm"),
        ("segment.py", "x job e2e"),
    ],
)
def test_benchmark_script_prints_ratios(script, expect):
    proc = run_script(script, *QUICK)
    assert expect in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python benchmark/<script> args` from the repository's root, as the README shows it."""
    command = [sys.executable, str(REPO / "benchmark" / script), *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_agreement_script_on_the_demo():
    proc = run_script("agreement.py", "model=unet_demo", "num_images=2", "num_calibration=8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pytorch-eager" in proc.stdout and "openvino" in proc.stdout


SCRIPTS = [
    "perf.py",
    "engines.py",
    "vs_benchmark_app.py",
    "pipeline.py",
    "agreement.py",
    "cuda.py",
    "scales.py",
    "segment.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_script_help_and_bad_arguments_run_nothing(script, tmp_path):
    """`--help` prints the script's docstring; a flag instead of an override is one line, and no sweep starts
    (a sweep would log to stderr)."""
    run = [sys.executable, str(REPO / "benchmark" / script)]
    shown = subprocess.run([*run, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "python benchmark/" in shown.stdout, shown.stderr[-2000:]
    bad = subprocess.run([*run, "-m", "batch=2"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "error: -m: the script takes Hydra overrides (key=value) only; see --help"
    ]


@pytest.mark.slow
@needs_carvana()
def test_milesial_reference_script_agrees_on_real_images():
    proc = run_script("milesial_reference.py", "data.num_images=3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "pipeline Dice" in proc.stdout and "milesial's preprocessing + Dice" in proc.stdout


def test_pipeline_script_runs_each_size_on_the_weights_trained_at_it(monkeypatch):
    """On Carvana the 640x959 rows run `unet_carvana_medium_640` (what the sample experiments run), not the
    320x479 weights at scale 0.5; a model the user names is run at both scales; a sweep that picks the model is
    not given a second `model=`."""
    monkeypatch.syspath_prepend(str(REPO / "benchmark"))
    monkeypatch.setenv("CARVANA_DATASETS_PATH", "/data/carvana")
    import _sweep
    import pipeline

    assert pipeline.sizes([]) == (
        "model=unet_carvana_small,unet_carvana_medium_640",
        "model=unet_carvana_medium_640",
    )
    assert pipeline.sizes(["model=unet_carvana", "model.checkpoint=random"]) == (
        "model.scale=0.25,0.5",
        "model.scale=0.5",
    )
    assert _sweep.sweep_data_overrides(["batch=1"], []) == ["model=unet_carvana_small"]

    assert _sweep.sweep_data_overrides(["model=unet_carvana_small_640", "batch=1"], []) == []


def test_pipeline_script_runs_the_sections_asked_for(monkeypatch):
    """`sections=` is the script's own option (never passed to Hydra), run in the docstring's order; a typo is
    one line naming the choices."""
    monkeypatch.syspath_prepend(str(REPO / "benchmark"))
    import pipeline

    assert pipeline.split_sections(["batch=1"]) == (list(pipeline.SECTIONS), ["batch=1"])
    assert pipeline.split_sections(["sections=hint,e2e", "batch=1"]) == (["e2e", "hint"], ["batch=1"])
    with pytest.raises(SystemExit, match="sections=bogus: choose from e2e,align,feed,fold,hint"):
        pipeline.split_sections(["sections=e2e,bogus"])
