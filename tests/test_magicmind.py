"""MagicMind: the build plan against the sample's scripts, the calibration protocol, the SDK call sequence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unet_pipeline.config import PrecisionMode
from unet_pipeline.core import PipelineError
from unet_pipeline.deploy import run_job
from unet_pipeline.engines import BuildSpec, Precision, QuantOptions
from unet_pipeline.engines.magicmind.engine import MISSING_SDK, MagicMindEngine, build_model, load_sdk
from unet_pipeline.engines.magicmind.plan import CalibrationFeed, MagicMindSettings, build_plan, to_engine_input
from unet_pipeline.record import load_records
from unet_pipeline.report import to_frame

from . import fake_magicmind
from .conftest import run_cli, tiny_overrides

MM_PRECISIONS = [m.value for m in PrecisionMode if "bfloat16" not in m.value]
ARCHS = {"mtp_372": [2, 6, 8], "mtp_592": [1]}


def sample_fragments(
    precision: str, dynamic: bool, batch_min: int, batch_max: int, h: int, w: int, arch: str, clusters: list[int]
) -> list[dict]:
    """What gen_model/run.sh -> python_common/model_process.py passes to parse_from_string, string by string.

    Transcribed from the sample (defaults: per_tensor, symmetric, means 0, vars 65025, computation
    preference auto, type64to32_conversion true, conv_scale_fold false).
    """
    strings = ['{"precision_config":{"precision_mode":"%s"}}' % precision]  # noqa: UP031 - as the sample
    if "int" in precision:
        strings += [
            '{"precision_config": {"weight_quant_granularity": "per_tensor"}}',
            '{"precision_config": {"activation_quant_algo":"symmetric"}}',
        ]
    strings.append('{"archs": [' + '{"%s": %s}' % (arch, json.dumps(clusters)) + "]}")  # noqa: UP031
    strings.append('{"insert_bn_before_firstnode":{"0":{"mean":[0.0,0.0,0.0],"var":[65025.0,65025.0,65025.0]}}}')
    strings.append('{"graph_shape_mutable":%s}' % ("true" if dynamic else "false"))
    if dynamic:
        strings.append(
            '{"dim_range": {"0":{"min":[%d,3,%d,%d],"max":[%d,3,%d,%d]}}}'  # noqa: UP031
            % (batch_min, h, w, batch_max, h, w)
        )
    strings += [
        '{"computation_preference":"auto"}',
        '{"opt_config":{"type64to32_conversion":true}}',
        '{"opt_config":{"conv_scale_fold":false}}',
    ]
    return [json.loads(s) for s in strings]


SAMPLE_QUANT = QuantOptions(weights="per_tensor")  # the sample's --weight_quant_granularity per_tensor


def spec(precision: str, shape: str, batch: int = 1, hw=(640, 959), quant: QuantOptions = SAMPLE_QUANT) -> BuildSpec:
    range_ = (1, 64) if shape == "dynamic" else None
    return BuildSpec(Precision(precision), shape, batch, range_, hw, 3, "mlu", quant=quant)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("shape", ["static", "dynamic"])
@pytest.mark.parametrize("precision", MM_PRECISIONS)
def test_plan_matches_the_sample_field_by_field(precision, shape, arch):
    batch = 1 if shape == "dynamic" else 16
    plan = build_plan(spec(precision, shape, batch), MagicMindSettings(arch=arch, cluster_num=tuple(ARCHS[arch])))
    expected = sample_fragments(precision, shape == "dynamic", 1, 64, 640, 959, arch, ARCHS[arch])
    assert len(plan["builder_config_fragments"]) == len(expected)
    for ours, theirs in zip(plan["builder_config_fragments"], expected, strict=True):
        assert ours == theirs
    assert plan["input_dims"] == [batch, 3, 640, 959] and plan["mlu_archs"] == [arch]
    assert plan["parser"]["model_params"] == {"pytorch-input-dtypes": ["FLOAT32"]}
    assert ("calibration" in plan) == precision.startswith("qint")
    if precision.startswith("qint"):
        assert plan["calibration"]["quantization_algorithm"] == "LINEAR_ALGORITHM"
        assert plan["calibration"]["batch_shape"] == [batch, 3, 640, 959]


def test_options_and_user_json_change_the_plan():
    settings = MagicMindSettings(
        input_layout="NHWC",
        computation_preference="high_precision",
        user_json={"opt_config": {"conv_scale_fold": True}, "extra": 1},
    )
    quant = QuantOptions(method="eqnm", weights="per_channel", activations="asymmetric")
    plan = build_plan(spec("qint16_mixed_float32", "static", 4, quant=quant), settings)
    merged = plan["builder_config"]
    assert merged["precision_config"] == {
        "precision_mode": "qint16_mixed_float32",
        "weight_quant_granularity": "per_axis",
        "activation_quant_algo": "asymmetric",
    }
    assert merged["convert_input_layout"] == {"0": {"src": "NCHW", "dst": "NHWC"}}
    assert merged["opt_config"] == {"type64to32_conversion": True, "conv_scale_fold": True}  # user JSON last
    assert merged["extra"] == 1 and merged["computation_preference"] == "high_precision"
    assert plan["calibration"]["quantization_algorithm"] == "EQNM_ALGORITHM"
    assert plan["calibration"]["batch_shape"] == [4, 640, 959, 3] and plan["input_dims"] == [4, 3, 640, 959]


def test_calibration_feed_protocol_and_normalization():
    rng = np.random.default_rng(0)
    images = [rng.random((3, 8, 12), dtype=np.float32) for _ in range(5)]
    feed = CalibrationFeed(images, batch=2, settings=MagicMindSettings())
    assert feed.shape() == [2, 3, 8, 12] and len(feed) == 3
    served = []
    while feed.next():
        served.append(feed.sample())
    assert len(served) == 3 and feed.next() is False
    # exactly the inference transform: x255 because /255 is folded into the model, never /255 again
    np.testing.assert_allclose(served[0][1], images[1] * 255, rtol=1e-6)
    np.testing.assert_allclose(served[2][1], images[0] * 255, rtol=1e-6)  # last batch wraps around
    assert to_engine_input(np.stack(images[:2]), MagicMindSettings()).max() > 1.0
    feed.reset()
    assert feed.next() and np.array_equal(feed.sample(), served[0])
    nhwc = CalibrationFeed(images, batch=1, settings=MagicMindSettings(input_layout="NHWC"))
    assert nhwc.shape() == [1, 8, 12, 3] and nhwc.next() and nhwc.sample().shape == (1, 8, 12, 3)


def test_sdk_absent_is_one_line():
    with pytest.raises(PipelineError) as info:
        load_sdk()
    assert str(info.value) == MISSING_SDK and "\n" not in MISSING_SDK


def test_build_call_sequence_against_the_sdk_double(monkeypatch, tmp_path):
    fake_magicmind.install(monkeypatch)
    s = spec("qint8_mixed_float16", "dynamic", batch=2, hw=(8, 12))
    plan = build_plan(s, MagicMindSettings())
    graph = tmp_path / "model.pt"
    graph.write_bytes(b"traced")
    images = [np.full((3, 8, 12), 0.5, np.float32) for _ in range(3)]
    feed = CalibrationFeed(images, s.build_batch, MagicMindSettings())
    build_model(load_sdk(), graph, plan, feed, tmp_path / "model.mm")
    names = [c[0] for c in fake_magicmind.CALLS]
    assert names == [
        "Network",
        "Parser",
        "set_model_param",
        "parse",
        "set_dimension",
        "BuilderConfig",
        "mlu_archs",
        *["parse_from_string"] * len(plan["builder_config_fragments"]),
        "Calibrator",
        "set_quantization_algorithm",
        "active",
        "calibrate",
        "build_model",
        "serialize_to_file",
    ]
    assert ("set_model_param", "pytorch-input-dtypes", ["FLOAT32"]) in fake_magicmind.CALLS
    # a dynamic artifact is built at the range's minimum batch, whatever batch it will run at
    assert ("set_dimension", [1, 3, 8, 12]) in fake_magicmind.CALLS
    assert build_plan(spec("qint8_mixed_float16", "dynamic", batch=16, hw=(8, 12)), MagicMindSettings()) == plan
    assert [c[1] for c in fake_magicmind.CALLS if c[0] == "parse_from_string"] == plan["builder_config_fragments"]
    assert len(fake_magicmind.CALIBRATION_SAMPLES) == 3
    assert all(np.allclose(x, 127.5) for x in fake_magicmind.CALIBRATION_SAMPLES)  # 0.5 -> 127.5, not 0.5/255


def test_float_build_does_not_calibrate(monkeypatch, tmp_path):
    fake_magicmind.install(monkeypatch)
    graph = tmp_path / "model.pt"
    graph.write_bytes(b"traced")
    plan = build_plan(spec("force_float16", "static", hw=(8, 12)), MagicMindSettings())
    build_model(load_sdk(), graph, plan, None, tmp_path / "model.mm")
    assert not any(c[0] in ("Calibrator", "calibrate") for c in fake_magicmind.CALLS)


def test_full_job_on_the_sdk_double(monkeypatch, tiny_job_cfg, tmp_path):
    """device=mlu370_x4 end to end: trace, build, calibrate, deserialize, enqueue, Dice, record."""
    fake_magicmind.install(monkeypatch)
    record = run_job(
        tiny_job_cfg("device=mlu370_x4", "precision=qint8_mixed_float16", "batch=2", "shape=dynamic"), tmp_path / "job"
    )
    assert record["status"] == "completed", record["error"]
    assert record["job"]["engine"] == "magicmind" and 0.0 <= record["metrics"]["dice"] <= 1.0
    assert record["compiled"]["arch"] == "mtp_372"
    assert any("not verified" in note for note in record["notes"])
    names = [c[0] for c in fake_magicmind.CALLS]
    assert names.index("serialize_to_file") < names.index("deserialize_from_file") < names.index("create_i_engine")
    warm_up, *images = fake_magicmind.ENQUEUED  # the job warms the session up once on zeros
    assert warm_up.max() == 0 and all(x.max() > 1.0 for x in images)  # 0-255 input, /255 folded in the model
    plan = json.loads((Path(record["cache"]["engine"]["path"]).parent / "build_plan.json").read_text())
    assert plan["builder_config"]["graph_shape_mutable"] is True
    assert "unverified" in to_frame(load_records(tmp_path / "job"))["compiled_as"][0]  # never shown as float


@pytest.mark.parametrize("precision", ["force_bfloat16", "qint8_mixed_bfloat16"])
def test_bf16_is_refused(precision):
    engine = MagicMindEngine(arch="mtp_372", cluster_num=[2, 6, 8])
    with pytest.raises(PipelineError, match="supported: force_float32"):
        engine.check(spec(precision, "static"))


def test_dry_run_plans_all_six_precisions_by_two_shapes(tmp_path, tiny_dataset, tiny_checkpoint):
    """The sample's setting (full UNet, 640x959, batch 1..64) for every precision x shape, without the SDK."""
    proc = run_cli(
        "-m",
        "device=mlu370_x4",
        "dry_run=true",
        "model=unet_carvana",
        "model.checkpoint=random",
        f"data.root={tiny_dataset}",
        "data.val_fraction=0.5",
        "calibration.num_samples=3",
        "calibration.weights=per_tensor",  # the sample's granularity (ours defaults to per_channel)
        f"precision={','.join(MM_PRECISIONS)}",
        "shape=static,dynamic",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/plan.json"))
    assert len(jobs) == 12
    plans = [json.loads(p.read_text()) for p in jobs]
    assert {(p["job"]["precision"], p["job"]["shape"]) for p in plans} == {
        (m, s) for m in MM_PRECISIONS for s in ("static", "dynamic")
    }
    (parity,) = [p for p in plans if p["job"]["precision"] == "qint8_mixed_float16" and p["job"]["shape"] == "dynamic"]
    assert parity["engine"]["builder_config_fragments"] == sample_fragments(
        "qint8_mixed_float16", True, 1, 64, 640, 959, "mtp_372", [2, 6, 8]
    )
    assert parity["calibration"]["num_samples"] == 3 and len(parity["calibration"]["files"]) == 3
    assert not (tmp_path / "outputs" / "cache").exists()  # nothing built


def test_real_run_without_sdk_is_a_failed_row(tmp_path, tiny_dataset, tiny_checkpoint):
    proc = run_cli("-m", "device=mlu370_x4,cpu", *tiny_overrides(tiny_dataset, tiny_checkpoint), cwd=tmp_path)
    assert proc.returncode == 1
    assert (
        "MagicMind is not importable"
        in (tmp_path / "outputs")
        .joinpath(next((tmp_path / "outputs" / "multirun").iterdir()), "results.md")
        .read_text()
    )


def test_every_engine_dry_runs(tiny_job_cfg, tmp_path):
    for engine in ("openvino", "onnxruntime", "torch"):
        record = run_job(tiny_job_cfg(f"engine={engine}", "dry_run=true", "precision=force_float32"), tmp_path / engine)
        assert record["status"] == "planned", record["error"]
        plan = json.loads((tmp_path / engine / "plan.json").read_text())
        assert plan["engine"]["engine"] == engine and plan["engine"]["input_shape"] == [1, 3, 64, 96]
        assert not (tmp_path / "cache").exists()
