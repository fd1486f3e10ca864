"""The content-addressed artifact cache: keys, integrity, atomic publication, concurrent builders."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from unet_pipeline.core import PipelineError, content_key
from unet_pipeline.deploy.cache import MANIFEST, ArtifactCache, verify_entry
from unet_pipeline.deploy.keys import engine_parts, export_parts
from unet_pipeline.engines import BuildSpec, EnginePlan, Precision
from unet_pipeline.record import job_identity


def _writer(payload: bytes, name: str = "model.bin"):
    calls = []

    def build(out: Path) -> Path:
        calls.append(out)
        (out / name).write_bytes(payload)
        (out / "meta.json").write_text("{}")
        return out / name

    return build, calls


def test_miss_then_hit_returns_the_same_verified_file(tmp_path):
    cache = ArtifactCache(tmp_path)
    build, calls = _writer(b"artifact")
    first = cache.get_or_build("engine", {"a": 1}, build)
    second = cache.get_or_build("engine", {"a": 1}, build)
    assert (first.hit, second.hit) == (False, True) and len(calls) == 1
    assert first.artifact == second.artifact and second.artifact.read_bytes() == b"artifact"
    assert cache.get_or_build("engine", {"a": 2}, build).hit is False and len(calls) == 2
    assert not list(tmp_path.glob("engine/.*.tmp"))  # published by rename, nothing left half-built


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: (e / "model.bin").write_bytes(b"artifacX"),  # same size, altered content
        lambda e: (e / "model.bin").write_bytes(b"art"),  # truncated
        lambda e: (e / "meta.json").unlink(),  # a file missing
        lambda e: (e / MANIFEST).write_text("{not json"),  # manifest corrupt
        lambda e: (e / MANIFEST).unlink(),  # never finished
    ],
    ids=["altered", "truncated", "file-missing", "manifest-corrupt", "manifest-missing"],
)
def test_a_damaged_entry_is_rebuilt_never_used(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    build, calls = _writer(b"artifact")
    entry = cache.get_or_build("engine", {"a": 1}, build).artifact.parent
    damage(entry)
    assert verify_entry(entry) is None
    again = cache.get_or_build("engine", {"a": 1}, build)
    assert (again.hit, again.rebuilt_corrupt, len(calls)) == (False, True, 2)
    assert again.artifact.read_bytes() == b"artifact" and verify_entry(entry) == again.artifact


def test_a_failed_build_leaves_no_entry_and_stale_builds_are_swept(tmp_path):
    cache = ArtifactCache(tmp_path)

    def broken(out: Path) -> Path:
        (out / "half").write_bytes(b"x")
        raise RuntimeError("engine crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("engine", {"a": 1}, broken)
    key = content_key({"a": 1})
    assert not cache.entry_dir("engine", key).exists() and not list(tmp_path.glob("engine/.*.tmp"))
    stale = tmp_path / "engine" / f".{key}.deadbeef.tmp"  # what a SIGKILL mid-build leaves behind
    stale.mkdir()
    build, _ = _writer(b"ok")
    assert cache.get_or_build("engine", {"a": 1}, build).artifact.read_bytes() == b"ok"
    assert not stale.exists()


def test_unwritable_cache_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(PipelineError, match=r"point cache\.dir elsewhere"):
        ArtifactCache(blocker / "cache").get_or_build("engine", {"a": 1}, _writer(b"x")[0])


def _slow_build(root: str, log: str) -> str:
    def build(out: Path) -> Path:
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)
        (out / "model.bin").write_bytes(b"same")
        return out / "model.bin"

    return str(ArtifactCache(root).get_or_build("engine", {"shared": True}, build).artifact)


def test_concurrent_builders_of_one_key_build_once(tmp_path):
    log = tmp_path / "builds.log"
    with mp.get_context("spawn").Pool(3) as pool:
        paths = pool.starmap(_slow_build, [(str(tmp_path / "cache"), str(log))] * 3)
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == b"same"
    assert log.read_text().count("built") == 1  # the others waited on the lock, then hit


def _spec(precision="force_float32", shape="dynamic", batch=1, hw=(64, 96)) -> BuildSpec:
    return BuildSpec(Precision(precision), shape, batch, (1, 16) if shape == "dynamic" else None, hw, 3, "cpu")


class _Engine:
    name = "openvino"

    def __init__(self, version="2026.4.1", **settings):
        self._version, self._settings = version, settings or {"performance_hint": "LATENCY"}

    def version(self):
        return self._version

    def settings(self):
        return self._settings

    def plan(self, spec):  # the quantizer settings an engine derives from the spec: part of the key
        quantization = {"overflow_fix": spec.quant.overflow_fix}
        return EnginePlan(self.name, self._settings, "openvino_ir", [1], "float_nchw", "", quantization=quantization)


def test_export_key_covers_weights_architecture_shape_and_format(compose_cfg):
    model = compose_cfg(["model=unet_carvana_small"]).model
    base = content_key(export_parts(model, "sha256:aa", _spec(), "openvino_ir"))
    assert content_key(export_parts(model, "sha256:aa", _spec(batch=8), "openvino_ir")) == base  # dynamic: run batch
    assert content_key(export_parts(model, "sha256:aa", _spec("qint8_mixed_float16"), "openvino_ir")) == base
    other_width = compose_cfg(["model=unet_carvana_small", "model.base_width=8"]).model
    for changed in (
        export_parts(model, "sha256:bb", _spec(), "openvino_ir"),
        export_parts(other_width, "sha256:aa", _spec(), "openvino_ir"),
        export_parts(model, "sha256:aa", _spec(hw=(64, 100)), "openvino_ir"),
        export_parts(model, "sha256:aa", _spec(shape="static"), "openvino_ir"),
        export_parts(model, "sha256:aa", _spec(), "onnx"),
    ):
        assert content_key(changed) != base


def _with_quant(spec, **changes):
    return dataclasses.replace(spec, quant=dataclasses.replace(spec.quant, **changes))


def test_engine_key_covers_engine_precision_and_calibration_content(compose_cfg, tiny_dataset):
    from unet_pipeline.data import list_samples

    cfg = compose_cfg([f"data.root={tiny_dataset}", "data=carvana"])
    samples = list_samples(str(tiny_dataset), cfg.data)
    spec = _spec("qint8_mixed_float16")
    base = content_key(engine_parts("e1", _Engine(), spec, cfg.calibration, samples[:3]))
    same = engine_parts("e1", _Engine(), _spec("qint8_mixed_float16", batch=4), cfg.calibration, samples[:3])
    assert content_key(same) == base
    other_root = compose_cfg([f"data.root={tiny_dataset}", "data=carvana", "calibration.root=/elsewhere"])
    assert content_key(engine_parts("e1", _Engine(), spec, other_root.calibration, samples[:3])) == base
    seed = compose_cfg([f"data.root={tiny_dataset}", "data=carvana", "calibration.seed=5"]).calibration
    for changed in (
        engine_parts("e2", _Engine(), spec, cfg.calibration, samples[:3]),
        engine_parts("e1", _Engine(version="2027.0"), spec, cfg.calibration, samples[:3]),
        engine_parts("e1", _Engine(performance_hint="THROUGHPUT"), spec, cfg.calibration, samples[:3]),
        engine_parts("e1", _Engine(), _spec("qint8_mixed_float32"), cfg.calibration, samples[:3]),
        engine_parts("e1", _Engine(), spec, cfg.calibration, samples[1:4]),
        engine_parts("e1", _Engine(), spec, seed, samples[:3]),
        engine_parts("e1", _Engine(), spec, cfg.calibration, samples[:3], None, "avx2"),  # the CPU's int8 class
        engine_parts("e1", _Engine(), _with_quant(spec, overflow_fix="enable"), cfg.calibration, samples[:3]),
    ):
        assert content_key(changed) != base
    # an edited calibration image is another calibration set, even under the same name
    samples[0].image.write_bytes(samples[0].image.read_bytes() + b"\0")
    assert content_key(engine_parts("e1", _Engine(), spec, cfg.calibration, samples[:3])) != base


def test_job_identity_ignores_run_time_switches_only(compose_cfg):
    base = job_identity(compose_cfg([]))
    for same in (["progress=false"], ["force=true"], ["cache.dir=/tmp/x"], ["benchmark.lock_dir=/tmp/l"]):
        assert job_identity(compose_cfg(same)) == base
    for other in (["batch=2"], ["precision=qint8_mixed_float16"], ["benchmark.iterations=7"]):
        assert job_identity(compose_cfg(other)) != base


def test_manifest_records_parts_and_files(tmp_path):
    build, _ = _writer(b"artifact")
    result = ArtifactCache(tmp_path).get_or_build("export", {"stage": "export", "w": "sha256:aa"}, build)
    manifest = json.loads((result.artifact.parent / MANIFEST).read_text())
    assert manifest["parts"]["w"] == "sha256:aa" and set(manifest["files"]) == {"model.bin", "meta.json"}
    assert result.record()["key"] == content_key({"stage": "export", "w": "sha256:aa"})


def test_job_identity_follows_the_checkpoint_content(compose_cfg, tmp_path):
    """Weights retrained into the same file must not be skipped on resume as if already measured."""
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights v1")
    before = job_identity(compose_cfg([f"model.checkpoint={path}"]))
    path.write_bytes(b"weights v2")
    assert job_identity(compose_cfg([f"model.checkpoint={path}"])) != before
