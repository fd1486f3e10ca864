"""Every bad input is one line naming the problem and the fix, and no fault loses finished work.

One row per case. Job-level rows run the job in-process and check its result.json on disk: status failed,
a single-line PipelineError (never an "unexpected" library error), the expected words. Command-line rows go
through the entry point's preflight. See README "Troubleshooting".
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_pipeline import preflight
from unet_pipeline.data import list_samples, select_eval
from unet_pipeline.deploy.job import RESULT_FILE, completed_before, run_job
from unet_pipeline.record import load_records

from .conftest import run_cli, tiny_overrides


class Case:
    """A bad input: `setup(data_root, checkpoint, tmp_path)` damages things and returns extra overrides."""

    def __init__(self, name: str, setup: Callable[[Path, Path, Path], list[str]], expect: str):
        self.name, self.setup, self.expect = name, setup, expect


def _eval_sample(root: Path, index: int = 0):
    from omegaconf import OmegaConf

    data = OmegaConf.create({"split": "val", "val_fraction": 0.5, "num_images": None, "images_dir": "imgs",
                             "masks_dir": "masks", "mask_suffix": "_mask"})  # fmt: skip
    return select_eval(list_samples(str(root), data), data)[index]


def _truncate(root, ckpt, tmp):
    image = _eval_sample(root).image
    image.write_bytes(image.read_bytes()[:-200])  # the tail lost, as an interrupted copy leaves it
    return []


def _not_an_image(root, ckpt, tmp):
    _eval_sample(root).image.write_bytes(b"<html>not a photo</html>")
    return []


def _mask_size(root, ckpt, tmp):
    Image.fromarray(np.zeros((10, 10), np.uint8), mode="P").save(_eval_sample(root).mask)
    return []


def _mask_values(root, ckpt, tmp):
    mask = np.zeros((64, 96), np.uint8)
    mask[10:20, 10:40] = 7  # a class index that is not {0,1}; optimize=False keeps GIF from renumbering it
    Image.fromarray(mask, mode="P").save(_eval_sample(root).mask, optimize=False)
    return []


def _no_mask(root, ckpt, tmp):
    next((root / "masks").iterdir()).unlink()
    return []


def _no_image(root, ckpt, tmp):
    next((root / "imgs").iterdir()).unlink()
    return []


def _empty(root, ckpt, tmp):
    (tmp / "empty").mkdir()
    return [f"data.root={tmp / 'empty'}"]


def _not_checkpoint(root, ckpt, tmp):
    ckpt.write_bytes(b"\x00garbage")
    return []


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def _pickle_with_code(root, ckpt, tmp):
    torch.save({"inc.double_conv.0.weight": torch.zeros(1), "x": _Exploit()}, ckpt, pickle_protocol=2)
    return []


def _unwritable_cache(root, ckpt, tmp):
    (tmp / "a_file").write_text("")
    return [f"cache.dir={tmp / 'a_file' / 'cache'}"]


def _static(*extra: str):
    return lambda root, ckpt, tmp: list(extra)


JOB_CASES = [
    # dataset
    Case("data.root unset", _static("data.root=null"), "data.root is not set: pass data.root="),
    Case("data.root missing", _static("data.root=/nonexistent/carvana"), "is not a directory"),
    Case("data.root empty", _empty, "has no imgs/ directory"),
    Case("image without mask", _no_mask, "have no mask"),
    Case("mask without image", _no_image, "have no image"),
    Case("truncated jpg", _truncate, "is truncated (no JPEG end marker); replace or remove it"),
    Case("non-image jpg", _not_an_image, "(not an image); replace or remove it"),
    Case("mask size differs", _mask_size, "masks must match their images"),
    Case("mask values outside {0,1}", _mask_values, "masks must be binary"),
    Case("fewer images than batch", _static("batch=64"), "lower batch or raise data.num_images"),
    Case(
        "fewer images than calibration",
        _static("precision=qint8_mixed_float32", "calibration.num_samples=500"),
        "lower calibration.num_samples",
    ),
    # model
    Case("checkpoint missing", _static("model.checkpoint=/nonexistent.pth"), "checkpoint not found"),
    Case("not a checkpoint", _not_checkpoint, "not a readable PyTorch file"),
    Case("wrong architecture", _static("model.base_width=8"), "does not match model="),
    Case("wrong class count", _static("model.n_classes=3"), "does not match model="),
    Case("pickle needing code", _pickle_with_code, "was refused (weights_only)"),
    # config
    Case("batch zero", _static("batch=0"), "batch=0 must be a positive integer"),
    Case("batch negative", _static("batch=-2"), "must be a positive integer"),
    Case("batch outside dynamic range", _static("shape=dynamic", "shape.batch_max=4", "batch=8"), "outside the"),
    Case(
        "calibration.num_samples zero",
        _static("precision=qint8_mixed_float32", "calibration.num_samples=0"),
        "calibration.num_samples=0 must be positive",
    ),
    Case("feed workers negative", _static("data.workers=-1"), "data.workers=-1 / data.prefetch_batches=2 must be 0"),
    Case("benchmark repeats zero", _static("benchmark.repeats=0"), "benchmark.repeats=0 must be 1 or more"),
    Case("engine x precision", _static("engine=torch", "precision=qint8_mixed_float32"), "does not support precision"),
    Case("engine x device", _static("engine=openvino", "device=mlu370_x4"), "does not support device=mlu"),
    # environment
    Case("MagicMind not installed", _static("device=mlu370_x4"), "MagicMind"),
    Case("ONNX Runtime GPU not installed", _static("engine=onnxruntime", "device=cuda"), "install onnxruntime-gpu"),
    Case("cache dir not writable", _unwritable_cache, "point cache.dir elsewhere"),
]


@pytest.mark.parametrize("case", JOB_CASES, ids=[c.name for c in JOB_CASES])
def test_bad_input_is_one_line_in_the_record(case, tiny_job_cfg, tiny_dataset, tiny_checkpoint, tmp_path):
    extra = case.setup(tiny_dataset, tiny_checkpoint, tmp_path)
    record = run_job(tiny_job_cfg(*extra), tmp_path / "job")
    on_disk = json.loads((tmp_path / "job" / RESULT_FILE).read_text())
    assert on_disk["status"] == "failed" and on_disk["error"] == record["error"]
    error = record["error"]
    assert case.expect in error, error
    assert "\n" not in error and "unexpected" not in error and "traceback" not in on_disk


def test_half_a_jpeg_decodes_grey_but_is_refused(tmp_path):
    """libjpeg returns a truncated JPEG with its missing rows grey; only the end-marker check catches it."""
    import cv2

    from unet_pipeline.core import BadSampleError
    from unet_pipeline.data import read_image

    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cv2.imread(str(path)) is not None  # the library alone would accept it
    with pytest.raises(BadSampleError, match="is truncated"):
        read_image(path)


def test_requested_device_absent(tiny_job_cfg, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    record = run_job(tiny_job_cfg("device=cuda"), tmp_path / "job")
    assert record["status"] == "failed" and "sees no CUDA GPU; use device=cpu" in record["error"]


CLI_CASES = [
    ("unknown group option", ["precision=fp17"], "Could not find 'precision/fp17'; choose one of: force_bfloat16"),
    ("unknown option in a sweep", ["-m", "precision=force_float32,fp17"], "Could not find 'precision/fp17'"),
    ("batch not an integer", ["batch=x"], "could not be converted to Integer"),
    ("misspelt key", ["data.rooot=/x"], "Key 'rooot' not in 'DataConfig'"),
    ("enum value", ["data.on_bad_sample=ignore"], "Invalid value 'ignore'"),
    ("output dir not writable", ["hydra.run.dir=/proc/nope/run"], "cannot be written"),
    ("sweep dir not writable", ["-m", "hydra.sweep.dir=/proc/nope"], "set hydra.sweep.dir=<a writable dir>"),
]


@pytest.mark.parametrize(("argv", "expect"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_bad_command_line_is_one_line(argv, expect):
    problem = preflight.check(argv, "pipeline")
    assert problem is not None and expect in problem and "\n" not in problem


def test_entry_points_print_the_preflight_line_without_traceback(tmp_path):
    for module in ("unet_pipeline", "unet_pipeline.train"):
        proc = run_cli("batch=x" if module == "unet_pipeline" else "train.epochs=x", cwd=tmp_path, module=module)
        assert proc.returncode == 1
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Integer" in lines[0], proc.stderr


def test_static_batch_never_meets_an_artifact_of_another_batch(tiny_job_cfg, tmp_path):
    """A static artifact's batch is part of its cache key: another batch builds its own, never reuses."""
    one = run_job(tiny_job_cfg("batch=1"), tmp_path / "b1")
    two = run_job(tiny_job_cfg("batch=2"), tmp_path / "b2")
    assert one["status"] == two["status"] == "completed"
    assert one["cache"]["engine"]["key"] != two["cache"]["engine"]["key"] and two["cache"]["engine"]["hit"] is False


def test_disk_full_while_writing_an_artifact(monkeypatch, tiny_job_cfg, tmp_path):
    from unet_pipeline.engines.openvino import OpenVINOEngine

    def full(self, graph, spec, calibration, out_dir):
        (out_dir / "partial.blob").write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(OpenVINOEngine, "build", full)
    record = run_job(tiny_job_cfg(), tmp_path / "job")
    assert record["status"] == "failed"
    assert "No space left on device" in record["error"] and "free space" in record["error"]
    cache = Path(record["cache"]["dir"])
    assert not list(cache.glob("engine/*")) or all(p.suffix == ".lock" for p in cache.glob("engine/*"))
    assert record["cache"]["export"]["hit"] is False and (cache / "export").is_dir()  # the export is kept


def test_altered_cache_entry_is_detected_and_rebuilt(tiny_job_cfg, tmp_path):
    first = run_job(tiny_job_cfg(), tmp_path / "a")
    blob = Path(first["cache"]["engine"]["path"])
    blob.write_bytes(blob.read_bytes()[:-100])  # truncated on disk
    second = run_job(tiny_job_cfg(), tmp_path / "b")
    assert second["status"] == "completed" and second["cache"]["engine"]["rebuilt_corrupt"] is True
    assert second["metrics"]["dice"] == first["metrics"]["dice"]
    assert any("failed its integrity check" in n for n in second["notes"])


def test_truncated_result_json_is_reported_and_re_run(tiny_job_cfg, tmp_path):
    cfg = tiny_job_cfg()
    done = run_job(cfg, tmp_path / "sweep" / "0")
    path = tmp_path / "sweep" / "0" / RESULT_FILE
    path.write_text(path.read_text()[:50])
    (row,) = load_records(tmp_path / "sweep")
    assert row["status"] == "unreadable"
    assert completed_before(tmp_path / "sweep" / "0", done["identity"]) is None  # so resume re-runs it
    assert run_job(cfg, tmp_path / "sweep" / "0")["status"] == "completed"


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_corrupt_evaluation_image_policy(policy, tiny_job_cfg, tiny_dataset, tmp_path):
    bad = _eval_sample(tiny_dataset, 1).image
    bad.write_bytes(bad.read_bytes()[:300])
    record = run_job(tiny_job_cfg(f"data.on_bad_sample={policy}"), tmp_path / "job")
    if policy == "fail":
        assert record["status"] == "failed" and str(bad) in record["error"]
    else:
        assert record["status"] == "completed"
        (skipped,) = record["data"]["skipped_evaluation"]
        assert skipped["id"] == bad.stem and str(bad) in skipped["error"]
        assert any("1 bad evaluation image(s) skipped" in n for n in record["notes"])
        per_image = (tmp_path / "job" / "per_image.csv").read_text()
        assert bad.stem not in per_image and record["metrics"]["num_images"] == per_image.count("\n") - 1


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_no_corrupt_entry_and_resume_completes(tmp_path, tiny_dataset, tiny_checkpoint):
    """10 kill -9s at seeded random moments of a cold sweep (export, calibration, build, inference all get hit)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    from unet_pipeline.deploy.cache import verify_entry

    base = ["-m", "precision=force_float32,qint8_mixed_float32", "batch=2"]
    base += tiny_overrides(tiny_dataset, tiny_checkpoint)
    start = time.monotonic()
    ref_dirs = [f"hydra.sweep.dir={tmp_path / 'ref'}", f"cache.dir={tmp_path / 'ref_cache'}"]
    reference = run_cli(*base, *ref_dirs, cwd=tmp_path)
    duration = time.monotonic() - start
    assert reference.returncode == 0, reference.stderr[-2000:]
    args = [*base, f"hydra.sweep.dir={tmp_path / 'sweep'}", f"cache.dir={tmp_path / 'cache'}"]
    rng = random.Random(0)
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "unet_pipeline", *args], cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.5, duration))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for entry in (tmp_path / "cache").glob("*/*"):
            if not entry.name.startswith(".") and entry.suffix != ".lock":
                assert verify_entry(entry) is not None, f"corrupt published entry {entry}"
    resumed = run_cli(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    ours = pd.read_csv(tmp_path / "sweep" / "results.csv")
    theirs = pd.read_csv(tmp_path / "ref" / "results.csv")
    assert (ours["status"] == "completed").all() and len(ours) == 2
    assert list(ours["metrics.dice"]) == list(theirs["metrics.dice"])
    assert not list((tmp_path / "cache").glob("*/.*.tmp"))
