"""int8 on every CPU: the ISA classes, what each engine picks against u8 x s8 saturation on each, and that
the choice reaches the quantizer, the cache key, result.json and the table."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from unet_pipeline.core import PipelineError, isa
from unet_pipeline.deploy import run_job
from unet_pipeline.engines import BuildSpec, Precision, QuantOptions, resolved_overflow_fix, with_overflow_fix
from unet_pipeline.engines.openvino.quantizer import nncf_arguments
from unet_pipeline.record import load_records
from unet_pipeline.report import to_frame
from unet_pipeline.report.warnings import precision_warning

# /proc/cpuinfo flags of the CPU kinds this project has run on, and two it has not
AVX2_EPYC = [
    "fpu",
    "sse4_2",
    "avx",
    "f16c",
    "fma",
    "avx2",
    "bmi2",
    "sha_ni",
    "vaes",
    "vpclmulqdq",
]  # AMD EPYC, AVX2 only
AVX512_VNNI_EPYC = [*AVX2_EPYC, "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]  # AMD EPYC (Zen 4)
AMX_XEON = [*AVX512_VNNI_EPYC, "amx_bf16", "amx_tile", "amx_int8"]  # Intel Xeon (Sapphire Rapids)
AVX512_SKYLAKE = [*AVX2_EPYC, "avx512f", "avx512bw", "avx512vl"]  # AVX-512 without VNNI
AVX_VNNI_CLIENT = [*AVX2_EPYC, "avx_vnni"]  # Alder Lake: VNNI on 256-bit registers, no AVX-512
SSE_ONLY = ["fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2"]

CASES = [
    (AVX2_EPYC, "x86_64", "avx2", True),
    (AVX512_SKYLAKE, "x86_64", "avx512", True),
    (AVX512_VNNI_EPYC, "x86_64", "vnni", False),
    (AVX_VNNI_CLIENT, "x86_64", "vnni", False),
    (AMX_XEON, "x86_64", "amx", False),
    (SSE_ONLY, "x86_64", "x86", True),
    ([], "x86_64", "x86", True),  # no /proc/cpuinfo: assume the worst, 7-bit weights cost little
    (["fp", "asimd", "asimddp"], "aarch64", "non_x86", False),
]


@pytest.mark.parametrize(("flags", "machine", "kind", "saturates"), CASES)
def test_int8_kernel_class_of_each_cpu(flags, machine, kind, saturates):
    found = isa.classify(flags, machine)
    assert (found.kind, found.saturates) == (kind, saturates)
    assert ("no VNNI" in found.describe()) == saturates


def test_flags_come_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\n")
    assert isa.cpu_flags(cpuinfo) == ["fpu", "avx2", "avx512_vnni"]
    assert isa.cpu_flags(tmp_path / "missing") == []
    assert isa.host() == isa.classify(isa.cpu_flags())


AMX_FP16_XEON = [*AMX_XEON, "avx512_fp16"]  # Sapphire / Emerald Rapids: AVX512-FP16, no AMX-FP16
GRANITE_RAPIDS = [*AMX_FP16_XEON, "amx_fp16"]


@pytest.mark.parametrize(
    ("flags", "machine", "slow"),
    [
        (AMX_FP16_XEON, "x86_64", True),
        (GRANITE_RAPIDS, "x86_64", False),
        (AMX_XEON, "x86_64", False),  # no native float16 at all: the no-native fallback applies instead
        (AVX2_EPYC, "x86_64", False),
        (["fp", "asimd", "fphp", "avx512_fp16"], "aarch64", False),
    ],
)
def test_float16_is_slow_only_on_x86_without_amx_fp16(flags, machine, slow):
    assert isa.slow_float16(flags, machine) is slow


@pytest.mark.parametrize(
    ("flags", "native", "mode", "compiled_as"),
    [
        (AMX_FP16_XEON, {"float32", "float16", "bfloat16"}, "qint8_mixed_float16", "float32"),
        (AMX_FP16_XEON, {"float32", "float16"}, "qint8_mixed_float16", "float32"),
        (AMX_FP16_XEON, {"float32", "float16", "bfloat16"}, "force_float16", "float16"),  # the headline: as asked
        (GRANITE_RAPIDS, {"float32", "float16", "bfloat16"}, "qint8_mixed_float16", "float16"),
        (AMX_FP16_XEON, {"float32", "float16", "bfloat16"}, "qint8_mixed_bfloat16", "bfloat16"),
    ],
)
def test_openvino_int8_float16_remainder_avoids_slow_float16(monkeypatch, flags, native, mode, compiled_as):
    """On an AMX Xeon without AMX-FP16 the sample's qint8_mixed_float16 ran 0.2x fp32 with its float16
    remainder; the remainder then compiles as f32 (wider than asked, as where float16 is absent), in the
    plan (so the cache key) and with the reason that the row's notes carry."""
    from unet_pipeline.deploy.keys import engine_parts
    from unet_pipeline.deploy.stages.verify import verify_compiled
    from unet_pipeline.engines.openvino import engine as ov_engine

    monkeypatch.setattr(ov_engine, "cpu_flags", lambda: flags)
    monkeypatch.setattr(isa.platform, "machine", lambda: "x86_64")
    engine = ov_engine.OpenVINOEngine()
    monkeypatch.setattr(engine, "native_float_types", lambda: native)
    spec = _spec(overflow_fix="first_layer", mode=mode)
    assert engine.float_type(spec) == compiled_as
    hint = engine.plan(spec).compile_config["INFERENCE_PRECISION_HINT"]
    assert hint == {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}[compiled_as]
    parts = engine_parts("export", engine, spec, None, None)
    assert parts["compile_config"]["INFERENCE_PRECISION_HINT"] == hint  # the cache key: no stale f16 artifact
    reason = engine.precision_fallback(spec)
    assert (reason is not None) == (compiled_as != spec.precision.float_type)
    if reason:
        assert f"runs as {compiled_as}" in reason and "AMX-FP16" in reason
        notes = verify_compiled(spec, {"inference_precision": compiled_as, "quantized_layer_share": 0.8}, True, reason)
        assert notes == [f"float part compiled as {compiled_as}, not the requested float16 ({reason})"]


def _spec(overflow_fix: str = "auto", device: str = "cpu", mode: str = "qint8_mixed_float32") -> BuildSpec:
    quant = QuantOptions(overflow_fix=overflow_fix)
    return BuildSpec(Precision(mode), "static", 1, None, (64, 96), 3, device, quant=quant)


def _engines():
    from unet_pipeline.engines.magicmind import MagicMindEngine
    from unet_pipeline.engines.onnxruntime import OnnxRuntimeEngine
    from unet_pipeline.engines.openvino import OpenVINOEngine

    return {"onnxruntime": OnnxRuntimeEngine(), "openvino": OpenVINOEngine(), "magicmind": MagicMindEngine()}


# engine -> (setting where u8 x s8 saturates, setting where it does not)
AUTO = {
    "onnxruntime": ("enable", "disable"),
    "openvino": ("enable", "first_layer"),
    "magicmind": ("disable", "disable"),
}


@pytest.mark.parametrize("engine_name", sorted(AUTO))
@pytest.mark.parametrize(("flags", "machine", "kind", "saturates"), CASES)
def test_auto_picks_per_engine_and_cpu(engine_name, flags, machine, kind, saturates):
    engine = _engines()[engine_name]
    device = "mlu" if engine_name == "magicmind" else "cpu"
    spec, choice = with_overflow_fix(engine, _spec(device=device), isa.classify(flags, machine))
    assert spec.quant.overflow_fix == choice.setting == AUTO[engine_name][0 if saturates else 1]
    assert kind in choice.why or engine_name == "magicmind"


def test_gpu_int8_needs_no_fix_and_float_is_untouched():
    engine = _engines()["onnxruntime"]
    avx2 = isa.classify(AVX2_EPYC, "x86_64")
    _, choice = with_overflow_fix(engine, _spec(device="cuda"), avx2)
    assert choice.setting == "disable" and "cuda" in choice.why
    spec, choice = with_overflow_fix(engine, _spec(mode="force_float32"), avx2)
    assert choice is None and spec.quant.overflow_fix == "auto"


def test_an_explicit_choice_is_kept_and_its_risk_said():
    engine = _engines()["openvino"]
    _, off = with_overflow_fix(engine, _spec("disable"), isa.classify(AVX2_EPYC, "x86_64"))
    assert off.setting == "disable" and "needs 7-bit weights" in off.why
    _, off = with_overflow_fix(engine, _spec("disable"), isa.classify(AMX_XEON, "x86_64"))
    assert off.setting == "disable" and "needs" not in off.why


@pytest.mark.parametrize(
    ("engine_name", "value"), [("onnxruntime", "first_layer"), ("magicmind", "enable"), ("magicmind", "first_layer")]
)
def test_settings_an_engine_cannot_honour_are_one_line(engine_name, value):
    with pytest.raises(PipelineError, match=f"no calibration.overflow_fix={value}; supported: auto") as info:
        _engines()[engine_name].check_quant(QuantOptions(overflow_fix=value))
    assert "\n" not in str(info.value)


def test_the_quantizers_get_the_resolved_setting():
    engines = _engines()
    with pytest.raises(ValueError, match="unresolved"):
        resolved_overflow_fix(QuantOptions())
    ort = engines["onnxruntime"]
    assert ort.plan(_spec("enable")).quantization["reduce_range"] is True
    assert ort.plan(_spec("disable")).quantization["reduce_range"] is False
    openvino = engines["openvino"]
    for setting, member in (("enable", "ENABLE"), ("first_layer", "FIRST_LAYER"), ("disable", "DISABLE")):
        assert openvino.plan(_spec(setting)).quantization["overflow_fix"] == member
        advanced = nncf_arguments(_spec(setting).quant, [None], [])["advanced_parameters"]
        assert advanced.overflow_fix.name == member


def _row(**fields) -> pd.Series:
    base = {"status": "completed", "job.precision": "qint8_mixed_float32", "dice_delta_vs_fp32": -0.2}
    return pd.Series({**base, **fields})


def test_a_collapsed_row_names_its_likely_cause():
    saturating = {"quantization.overflow_fix.chosen": "disable", "quantization.overflow_fix.cpu.saturates": True}
    saturating["quantization.overflow_fix.cpu.int8_kind"] = "avx2"
    warning = precision_warning(_row(**saturating))
    assert "saturation" in warning and "avx2" in warning and "calibration.overflow_fix=enable" in warning
    fixed = {**saturating, "quantization.overflow_fix.chosen": "enable"}
    assert "calibration.num_samples" in precision_warning(_row(**fixed))
    assert "float16 overflow" in precision_warning(_row(**{"job.precision": "force_float16"}))
    assert "mantissa" in precision_warning(_row(**{"job.precision": "force_bfloat16"}))
    assert "calibration" in precision_warning(_row(**{"job.precision": "qint8_mixed_bfloat16"}))  # int8 first
    assert precision_warning(_row(dice_delta_vs_fp32=-0.009)) is None  # within 0.01
    assert precision_warning(_row(status="failed")) is None


@pytest.fixture
def host_is(monkeypatch):
    """Make the job believe it runs on a CPU with these flags."""

    def _set(flags: list[str]) -> None:
        monkeypatch.setattr(isa, "host", lambda: isa.classify(flags, "x86_64"))

    return _set


def test_the_choice_is_recorded_keyed_and_shown(tiny_job_cfg, tmp_path, host_is):
    """An artifact built where nothing saturates is not reused where it would, and each row says why."""
    cfg = tiny_job_cfg("precision=qint8_mixed_float32", "engine=onnxruntime", "benchmark.enabled=false")
    records = {}
    for name, flags in (("vnni", AVX512_VNNI_EPYC), ("avx2", AVX2_EPYC), ("avx2_again", AVX2_EPYC)):
        host_is(flags)
        records[name] = run_job(cfg, tmp_path / "sweep" / name)
        assert records[name]["status"] == "completed", records[name]["error"]
    vnni, avx2, again = records["vnni"], records["avx2"], records["avx2_again"]
    assert vnni["quantization"]["overflow_fix"]["chosen"] == "disable"
    assert avx2["quantization"]["overflow_fix"]["chosen"] == "enable"
    assert avx2["quantization"]["overflow_fix"]["cpu"] == {"int8_kind": "avx2", "saturates": True, "flags": ["avx2"]}
    assert avx2["quantization"]["options"]["overflow_fix"] == "enable"  # what the artifact was built with
    assert not vnni["cache"]["engine"]["hit"] and not avx2["cache"]["engine"]["hit"]  # another ISA: rebuilt
    assert again["cache"]["engine"]["hit"] and again["cache"]["engine"]["key"] == avx2["cache"]["engine"]["key"]
    frame = to_frame(load_records(tmp_path / "sweep"))
    assert list(frame["calibration"].str.split(" · ").str[-1]) == [
        "7-bit weights (avx2)",
        "7-bit weights (avx2)",
        "8-bit weights (vnni)",
    ]


def test_dry_run_plan_shows_the_setting(tiny_job_cfg, tmp_path, host_is):
    host_is(AVX2_EPYC)
    cfg = tiny_job_cfg("precision=qint8_mixed_float32", "dry_run=true")
    record = run_job(cfg, tmp_path / "job")
    assert record["status"] == "planned"
    plan = json.loads((tmp_path / "job" / "plan.json").read_text())
    assert plan["engine"]["quantization"]["overflow_fix"] == "ENABLE"
    assert record["quantization"]["overflow_fix"]["requested"] == "auto"


def test_quant_options_replace_keeps_the_resolved_setting():
    """The accuracy-control search builds variants of a resolved spec: none of them falls back to auto."""
    quant = replace(QuantOptions(overflow_fix="enable"), keep_float=("0",))
    assert resolved_overflow_fix(quant) == "enable"


def test_the_cpu_class_is_part_of_a_quantized_artifacts_key(tiny_job_cfg, tmp_path):
    """Even with the same explicit setting: an engine's int8 artifact is built for the CPU it was built on."""
    from unet_pipeline.data import Sample
    from unet_pipeline.deploy import build_spec
    from unet_pipeline.deploy.keys import engine_parts
    from unet_pipeline.engines.openvino import OpenVINOEngine

    image = tmp_path / "a.jpg"
    image.write_bytes(b"pixels")
    calib = [Sample("a_01", image, image)]
    cfg = tiny_job_cfg("precision=qint8_mixed_float32", "calibration.overflow_fix=disable")
    spec, _ = with_overflow_fix(OpenVINOEngine(), build_spec(cfg), isa.classify(AVX2_EPYC, "x86_64"))

    def key(kind: str) -> dict:
        return engine_parts("export", OpenVINOEngine(), spec, cfg.calibration, calib, None, kind)

    assert key("avx2") != key("vnni") and key("avx2") == key("avx2")


def test_int8_off_the_host_cpu_is_never_blamed_on_its_saturation():
    """MagicMind on an MLU or ONNX Runtime on CUDA, launched from an AVX2 host: the host's flags do not apply."""
    from unet_pipeline.report.columns import calibration_cell

    off_cpu = {
        "quantization.overflow_fix.chosen": "disable",
        "quantization.overflow_fix.runs_on": "mlu",
        "quantization.overflow_fix.cpu.saturates": True,
        "quantization.overflow_fix.cpu.int8_kind": "avx2",
    }
    assert "saturation" not in precision_warning(_row(**off_cpu))
    on_cpu = {**off_cpu, "quantization.overflow_fix.runs_on": "cpu"}
    assert "overflow_fix=disable" in precision_warning(_row(**on_cpu))
    column = {"quantization.options.method": "default", "data.calibration_images": 50, **off_cpu}
    assert calibration_cell(pd.Series(column)).endswith("8-bit weights (mlu)")
    assert calibration_cell(pd.Series({**column, **on_cpu})).endswith("8-bit weights (avx2)")


def test_a_job_failing_on_its_calibration_images_keeps_its_data_record(tiny_job_cfg, tmp_path):
    cfg = tiny_job_cfg("precision=qint8_mixed_float32", "calibration.num_samples=500")
    record = run_job(cfg, tmp_path / "job")
    assert record["status"] == "failed" and "calibration.num_samples=500" in record["error"]
    assert record["data"]["root"] == cfg.data.root and record["data"]["eval_cars"] >= 1
    assert record["quantization"]["overflow_fix"]["requested"] == "auto"  # chosen before any image was read


@pytest.mark.parametrize(
    ("native", "instead"),
    [({"float32", "bfloat16"}, "bfloat16"), ({"float32"}, "float32")],
)
def test_openvino_says_what_float16_runs_as_without_native_float16(monkeypatch, native, instead):
    """On an AVX-512 BF16 EPYC (no fp16) OpenVINO compiled a float16 hint as bfloat16, not float32: the reason a
    row carries names that, and float32 only where the CPU has neither."""
    from unet_pipeline.engines.openvino import engine as ov_engine

    engine = ov_engine.OpenVINOEngine()
    monkeypatch.setattr(engine, "native_float_types", lambda: native)
    reason = engine.precision_fallback(_spec(mode="force_float16"))
    assert reason is not None and reason.endswith(f"so it would run {instead}")


@pytest.mark.parametrize(
    ("mode", "flags", "align"),
    [
        ("qint8_mixed_float32", AVX2_EPYC, 32),  # int8: aligned on every CPU class
        ("qint8_mixed_float32", AMX_XEON, 32),
        ("force_bfloat16", AMX_XEON, 32),  # bf16 on AMX tiles: 1.5x aligned
        ("force_bfloat16", AVX512_VNNI_EPYC, 0),  # bf16 without AMX: no gain
        ("force_float32", AMX_XEON, 0),  # fp32: slower aligned
        ("force_float16", AMX_FP16_XEON, 0),
    ],
)
def test_float_align_default_is_chosen_per_cpu_class(mode, flags, align):
    from unet_pipeline.config.registry import default_align

    value, why = default_align(mode, flags)
    assert value == align and why


def test_the_record_says_why_align_is_what_it_is(compose_cfg):
    from unet_pipeline.config.registry import default_align
    from unet_pipeline.record.schema import JobInfo

    cfg = compose_cfg(["precision=force_bfloat16"])
    value, why = default_align("force_bfloat16")
    assert cfg.model.align == value and JobInfo.of(cfg, []).align_why == f"default here: {why}"
    forced = JobInfo.of(compose_cfg(["precision=force_bfloat16", f"model.align={32 - value}"]), [])
    assert forced.align_why.startswith("set by the config") and forced.align == 32 - value
