"""Segmenting new images: the evaluation job's masks bit for bit, from a bundle checked when loaded, resumable
after kill -9, shardable, and never writing into its input."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from unet_pipeline.core import PipelineError, isa
from unet_pipeline.data.rle import rle_decode
from unet_pipeline.deploy import run_job
from unet_pipeline.deploy.bundle import load_bundle, make_bundle

from .conftest import run_cli, write_dataset


def _png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def bundled_job(tiny_job_cfg, tmp_path):
    """An int8 job of batch 2 that saved its masks, its evaluation images alone in a folder (with their masks in
    another), and its bundle."""
    job = tmp_path / "job"
    record = run_job(tiny_job_cfg("precision=qint8_mixed_float32", "batch=2", "save.masks=true"), job)
    assert record["status"] == "completed", record["error"]
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for row in pd.read_csv(job / "per_image.csv").itertuples():
        shutil.copy(row.image, images)
        stem = Path(row.image).stem
        shutil.copy(Path(row.image).parents[1] / "masks" / f"{stem}_mask.gif", masks)
    return job, record, images, masks, make_bundle(job, tmp_path / "bundle")


def _segment(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, "progress=false", f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path,
                   module="unet_pipeline.segment")  # fmt: skip


def test_segment_equals_the_evaluation_jobs_masks_and_dice(bundled_job, tmp_path):
    job, record, images, masks, bundle = bundled_job
    out = tmp_path / "out"
    before = sorted(p.name for p in images.iterdir())
    proc = _segment(tmp_path, f"bundle={bundle}", f"input={images}", f"masks={masks}", f"output={out}",
                    "output_format=both")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in images.iterdir()) == before  # nothing written into the input
    saved = sorted((job / "masks").glob("*.png"))
    assert len(saved) == record["metrics"]["num_images"] == len(before)
    rows = {r["img"]: r["rle_mask"] for r in csv.DictReader((out / "rle.csv").open())}
    for path in saved:
        ours = _png(out / path.name)
        assert np.array_equal(ours, _png(path)), path.name  # bit for bit, at the frame's size
        assert np.array_equal(rle_decode(rows[f"{path.stem}.jpg"], ours.shape) * 255, ours)
    result = json.loads((out / "segment.json").read_text())["result"]
    assert result["dice"] == pytest.approx(record["metrics"]["dice"], abs=1e-6)
    assert result["dice_full"] == pytest.approx(record["metrics"]["dice_full"], abs=1e-6)


def test_a_folder_without_masks_and_a_rerun_does_only_what_is_missing(bundled_job, tmp_path):
    _, _, images, _, bundle = bundled_job
    nested = tmp_path / "nested"
    shutil.copytree(images, nested / "a" / "b")
    out = tmp_path / "out"
    assert _segment(tmp_path, f"bundle={bundle}", f"input={nested}", f"output={out}").returncode == 0
    written = sorted(out.rglob("*.png"))
    assert len(written) == len(list(images.iterdir())) and all(p.parent == out / "a" / "b" for p in written)
    first = {p: p.stat().st_mtime_ns for p in written}
    written[0].unlink()
    again = _segment(tmp_path, f"bundle={bundle}", f"input={nested}", f"output={out}")
    assert f"segmented 1 of {len(written)} images ({len(written) - 1} already there)" in again.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in first.items() if p != written[0]) and written[0].is_file()


def test_a_bundle_is_checked_when_loaded(bundled_job, tmp_path, monkeypatch):
    _, record, _, _, bundle = bundled_job
    assert record["quantization"]["overflow_fix"]["chosen"] in ("first_layer", "enable")
    if record["quantization"]["overflow_fix"]["chosen"] == "first_layer":  # built here for a VNNI-class CPU
        monkeypatch.setattr(isa, "host", lambda: isa.classify(["avx2", "fma"], "x86_64"))
        with pytest.raises(PipelineError, match=r"^bundle .*saturates u8 x s8 sums .*: rebuild it here with `python"):
            load_bundle(bundle)
        monkeypatch.undo()
    contract = json.loads((bundle / "bundle.json").read_text())
    assert contract["input"]["layout"] in ("NCHW", "NHWC") and contract["reproduce"]["vendor"][0] == "benchmark_app"
    assert set(contract["files"]) >= {"result.json", contract["engine"]["artifact"]}
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle, tampered)
    with (tampered / contract["engine"]["artifact"]).open("ab") as fh:
        fh.write(b"\0")
    proc = _segment(tmp_path, f"bundle={tampered}", f"input={tmp_path}", f"output={tmp_path / 'o'}")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "changed since it was bundled" in proc.stderr


def test_shards_together_equal_one_unsharded_run(bundled_job, tmp_path):
    _, _, images, _, bundle = bundled_job
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert (
        _segment(tmp_path, f"bundle={bundle}", f"input={images}", f"output={whole}", "output_format=both").returncode
        == 0
    )
    proc = run_cli("-m", f"bundle={bundle}", f"input={images}", f"output={parts}", "output_format=both", "shard=0,1",
                   "num_shards=2", "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path,
                   module="unet_pipeline.segment")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in whole.glob("*.png")) == sorted(p.name for p in parts.glob("*.png"))
    assert all(np.array_equal(_png(p), _png(parts / p.name)) for p in whole.glob("*.png"))
    rows = [r for f in sorted(parts.glob("rle.shard-*.csv")) for r in csv.DictReader(f.open())]
    assert sorted(rows, key=lambda r: r["img"]) == sorted(
        csv.DictReader((whole / "rle.csv").open()), key=lambda r: r["img"]
    )


def test_an_unreadable_image_is_listed_and_the_run_goes_on(bundled_job, tmp_path):
    _, _, images, _, bundle = bundled_job
    broken = tmp_path / "broken"
    shutil.copytree(images, broken)
    (broken / "zz_broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out"
    proc = _segment(tmp_path, f"bundle={bundle}", f"input={broken}", f"output={out}")
    assert proc.returncode == 3 and "skipped.csv" in proc.stderr
    assert "zz_broken" in (out / "skipped.csv").read_text() and len(list(out.glob("*.png"))) == len(
        list(images.iterdir())
    )
    failing = _segment(
        tmp_path, f"bundle={bundle}", f"input={broken}", f"output={tmp_path / 'o2'}", "on_bad_image=fail"
    )
    assert failing.returncode == 1 and failing.stderr.count("\n") == 1 and "zz_broken" in failing.stderr


def test_kill_9_then_a_rerun_leaves_a_complete_uncorrupted_output(bundled_job, tmp_path):
    _, _, _, _, bundle = bundled_job
    many = write_dataset(tmp_path / "many", cars=30, views=4) / "imgs"
    out = tmp_path / "out"
    args = [sys.executable, "-m", "unet_pipeline.segment", f"bundle={bundle}", f"input={many}", f"output={out}",
            "output_format=both", "progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"]  # fmt: skip
    victim = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("*.png"))) < 10:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert len(list(out.glob("*.png"))) < 120, "the run finished before it could be killed"
    rerun = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 120 and all(_png(p) is not None and _png(p).shape == (64, 96) for p in pngs)
    assert not list(out.rglob("*.tmp"))
    rows = list(csv.DictReader((out / "rle.csv").open()))
    assert sorted(r["img"] for r in rows) == sorted(p.name for p in many.iterdir())


def test_without_a_bundle_the_configuration_is_built_or_taken_from_the_cache(bundled_job, tmp_path, tiny_dataset,
                                                                             tiny_checkpoint):  # fmt: skip
    """`model=... precision=...` instead of `bundle=`: the artifact a job of that configuration would use (here the
    bundled job's, from the same cache), so the masks are the same."""
    _, _, images, _, bundle = bundled_job
    from .conftest import tiny_overrides

    out, again = tmp_path / "from_bundle", tmp_path / "from_config"
    assert _segment(tmp_path, f"bundle={bundle}", f"input={images}", f"output={out}").returncode == 0
    config = [*tiny_overrides(tiny_dataset, tiny_checkpoint), "precision=qint8_mixed_float32", "batch=2"]
    proc = _segment(tmp_path, *config, f"input={images}", f"output={again}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    about = json.loads((again / "segment.json").read_text())
    assert about["cache"]["engine"]["hit"] is True  # the job's own artifact, not a rebuild
    assert all(np.array_equal(_png(p), _png(again / p.name)) for p in out.glob("*.png"))
