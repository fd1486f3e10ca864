"""Calibration choices and accuracy-aware int8: options reach the quantizer, layers kept in float really are,
a Dice budget is met or refused in one line, and the table says which calibration each row used."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from unet_pipeline.core import PipelineError, isa
from unet_pipeline.data import Sample, select_validation
from unet_pipeline.deploy import build_spec, run_job
from unet_pipeline.deploy.keys import engine_parts
from unet_pipeline.deploy.stages.quantize import search_order
from unet_pipeline.engines import (
    BuildSpec,
    Capabilities,
    Precision,
    QuantOptions,
    budget_error,
    resolve_layers,
    with_overflow_fix,
)
from unet_pipeline.engines.openvino import OpenVINOEngine
from unet_pipeline.engines.openvino.quantizer import nncf_arguments
from unet_pipeline.record import load_records
from unet_pipeline.report import to_frame

from .conftest import run_cli, tiny_overrides

LAYERS = ["conv_a", "conv_b", "conv_c", "conv_d"]
INT8 = "precision=qint8_mixed_float32"


@pytest.mark.parametrize(
    ("wanted", "names"),
    [
        (("first", "last"), ["conv_a", "conv_d"]),
        (("0", "-1", "first"), ["conv_a", "conv_d"]),  # duplicates collapse
        (("1", "conv_c"), ["conv_b", "conv_c"]),
        ((), []),
    ],
)
def test_layers_by_position_or_name(wanted, names):
    assert resolve_layers(LAYERS, wanted) == names


@pytest.mark.parametrize(("wanted", "message"), [(("4",), "outside the 4"), (("conv_x",), "no compute layer named")])
def test_unknown_layers_are_one_line(wanted, message):
    with pytest.raises(PipelineError, match=message) as info:
        resolve_layers(LAYERS, wanted)
    assert "\n" not in str(info.value)


def test_search_goes_from_most_to_least_int8():
    order = search_order(QuantOptions(weights="per_tensor", max_dice_drop=0.001), 4)
    assert [q.weights for q in order[:2]] == ["per_tensor", "per_channel"]
    assert [q.keep_float for q in order[1:]] == [(), ("3",), ("3", "0"), ("3", "0", "2"), ("3", "0", "2", "1")]
    # layers asked for stay kept; nothing is tried twice
    kept = search_order(QuantOptions(keep_float=("first",)), 3)
    assert [q.keep_float for q in kept] == [("first",), ("first", "2"), ("first", "2", "1")]
    assert search_order(QuantOptions(), 0) == [QuantOptions()]


def _samples(cars: int, views: int, root: Path = Path(".")) -> list[Sample]:
    names = [f"car{c}_{v:02d}" for c in range(cars) for v in range(views)]
    return [Sample(n, root / f"{n}.jpg", root / f"{n}_mask.gif") for n in names]


def test_validation_images_are_apart_from_evaluation_and_calibration():
    samples = _samples(6, 4)
    evaluation = [s for s in samples if s.car == "car0"]
    calibration = samples[4:10]
    picked = select_validation(samples, evaluation, calibration, 8, seed=0)
    assert len(picked) == 8 and picked == select_validation(samples, evaluation, calibration, 8, seed=0)
    assert not {s.id for s in picked} & {s.id for s in calibration + evaluation}
    with pytest.raises(PipelineError, match="validation_samples=20 but only 14"):
        select_validation(samples, evaluation, calibration, 20, seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["calibration.method=entropy"], "engine=openvino has no calibration.method=entropy; supported: default"),
        (["engine=onnxruntime", "calibration.method=histogram"], "supported: default, minmax, percentile, entropy"),
        (["engine=torch", "calibration.keep_float=[last]"], "engine=torch"),
        (["calibration.keep_float=[40]"], "position 40 is outside"),
        (["calibration.max_dice_drop=2"], "must be in [0, 1)"),
        (
            ["engine=onnxruntime", "calibration.bias_correction=full"],
            "engine=onnxruntime has no calibration.bias_correction=full; supported: default, none",
        ),
    ],
)
def test_unsupported_calibration_choices_fail_in_one_line(tiny_job_cfg, tmp_path, overrides, message):
    record = run_job(tiny_job_cfg(INT8, *overrides), tmp_path / "job")
    assert record["status"] == "failed"
    assert message in record["error"] and "\n" not in record["error"]


def test_magicmind_maps_and_refuses_its_options(tiny_job_cfg):
    from unet_pipeline.engines.magicmind import MagicMindEngine

    engine = MagicMindEngine(arch="mtp_372", cluster_num=[2, 6, 8])
    cfg = tiny_job_cfg("device=mlu370_x4", "engine=magicmind", INT8, "calibration.method=eqnm")
    assert engine.plan(build_spec(cfg)).details["calibration"]["quantization_algorithm"] == "EQNM_ALGORITHM"
    with pytest.raises(PipelineError, match="symmetric activations only"):
        engine.check(
            build_spec(
                tiny_job_cfg("device=mlu370_x4", INT8, "calibration.method=eqnm", "calibration.activations=asymmetric")
            )
        )
    with pytest.raises(PipelineError, match="cannot keep chosen layers in float"):
        engine.check(build_spec(tiny_job_cfg("device=mlu370_x4", INT8, "calibration.keep_float=[first]")))


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_kept_layers_really_run_float(tiny_job_cfg, tmp_path, engine):
    plain = run_job(tiny_job_cfg(INT8, f"engine={engine}"), tmp_path / "plain")
    kept = run_job(tiny_job_cfg(INT8, f"engine={engine}", "calibration.keep_float=[first,last]"), tmp_path / "kept")
    assert plain["status"] == kept["status"] == "completed", kept["error"]
    names = kept["quantization"]["keep_float_layers"]
    assert len(names) == 2 and kept["quantization"]["options"]["keep_float"] == ["first", "last"]
    share, kept_share = plain["compiled"]["quantized_layer_share"], kept["compiled"]["quantized_layer_share"]
    assert 0 < kept_share < share
    if engine == "openvino":  # the runtime names the float layers; the kept ones are among them
        assert names[-1] in kept["compiled"]["float_compute_layers"]
        assert names[-1] not in plain["compiled"]["float_compute_layers"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["calibration.method=minmax", "calibration.activations=asymmetric"],
        ["calibration.method=percentile", "calibration.percentile=99.9", "calibration.weights=per_tensor"],
        ["calibration.method=histogram"],
        ["calibration.bias_correction=full"],
        ["calibration.bias_correction=none"],
        ["engine=onnxruntime", "calibration.method=entropy", "calibration.activations=symmetric"],
        ["engine=onnxruntime", "calibration.method=percentile", "calibration.weights=per_tensor"],
    ],
)
def test_every_calibration_choice_builds_an_int8_model(tiny_job_cfg, tmp_path, overrides):
    record = run_job(tiny_job_cfg(INT8, *overrides), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["quantized_layer_share"] > 0.5


@pytest.mark.parametrize(
    ("setting", "fast", "disabled", "recorded"),
    [
        ("default", True, False, "FastBiasCorrection (NNCF default)"),
        ("fast", True, False, "FastBiasCorrection"),
        ("full", False, False, "BiasCorrection (fast_bias_correction=False)"),
        ("none", True, True, "none (disable_bias_correction)"),
    ],
)
def test_bias_correction_reaches_nncf_and_the_key(setting, fast, disabled, recorded):
    """`calibration.bias_correction` is NNCF's `fast_bias_correction` / `disable_bias_correction`, and the plan
    (part of the engine's cache key) says which ran, so a full-correction build is never served a fast one."""
    spec = BuildSpec(
        Precision("qint8_mixed_float32"), "static", 1, None, (16, 16), 3, "cpu",
        quant=QuantOptions(overflow_fix="first_layer", bias_correction=setting),
    )  # fmt: skip
    engine = OpenVINOEngine()
    arguments = nncf_arguments(spec.quant, [None], [])
    assert arguments["fast_bias_correction"] is fast
    assert arguments["advanced_parameters"].disable_bias_correction is disabled
    assert engine.plan(spec).quantization["bias_correction"] == recorded


def _per_tensor_drop(tiny_job_cfg, tmp_path, engine: str, budget: str) -> dict:
    return run_job(
        tiny_job_cfg(
            INT8,
            f"engine={engine}",
            "calibration.num_samples=2",
            "calibration.weights=per_tensor",
            f"calibration.max_dice_drop={budget}",
            "calibration.validation_samples=3",
        ),
        tmp_path / f"{engine}-{budget}",
    )


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_a_loose_budget_keeps_plain_int8(tiny_job_cfg, tmp_path, engine):
    record = _per_tensor_drop(tiny_job_cfg, tmp_path, engine, "0.9")
    assert record["status"] == "completed", record["error"]
    control = record["quantization"]["accuracy_control"]
    assert control["kept_float"] == [] and control["validation_images"] == 3
    assert control["reference_dice"] - control["final_dice"] <= 0.9
    assert len(record["data"]["validation_ids"]) == 3
    assert not set(record["data"]["validation_ids"]) & set(record["data"]["calibration_ids"])


def test_search_keeps_layers_until_the_budget_holds_or_says_it_cannot(tiny_job_cfg, tmp_path):
    """ONNX Runtime has no accuracy-aware quantizer: the documented search runs (random tiny weights lose
    Dice under int8 unless layers stay float; the search either meets the zero budget with layers in float, or
    fails in one line after its trials)."""
    record = _per_tensor_drop(tiny_job_cfg, tmp_path, "onnxruntime", "0")
    if record["status"] == "completed":
        control = record["quantization"]["accuracy_control"]
        assert control["final_dice"] >= control["reference_dice"]
        assert control["trials"][-1]["drop"] <= 0 and control["trials"][-1]["keep_float"] == control["kept_float"]
    else:
        assert "calibration.max_dice_drop=0.0 not reached" in record["error"] and "\n" not in record["error"]


def test_worst_image_budget_uses_the_search_and_bounds_every_image(tiny_job_cfg, tmp_path):
    """drop_metric=worst_image: NNCF's control bounds a mean, so OpenVINO gets the search, which keeps layers in
    float until no validation image loses more than the budget."""
    record = run_job(
        tiny_job_cfg(
            INT8,
            "calibration.num_samples=2",
            "calibration.weights=per_tensor",
            "calibration.max_dice_drop=0.01",
            "calibration.drop_metric=worst_image",
            "calibration.validation_samples=3",
        ),
        tmp_path / "job",
    )
    if record["status"] == "failed":
        assert "(worst_image) on the validation images" in record["error"]
        trials = record["quantization"]["accuracy_control"]["trials"]  # kept though it failed
        assert len(trials) > 1 and all(t["drop"] > 0.01 for t in trials)
        return
    control = record["quantization"]["accuracy_control"]
    assert control["tool"].startswith("search") and control["drop_metric"] == "worst_image"
    assert control["final_drop"] <= 0.01 and control["trials"][-1]["drop"] == control["final_drop"]
    assert all(t["drop"] > 0.01 for t in control["trials"][:-1])  # every earlier, more int8 trial missed


def test_a_missed_budget_keeps_its_trials_in_the_failed_record(tiny_job_cfg, tmp_path, monkeypatch):
    """A search of many minutes that misses its budget still says, in result.json, how close each try came."""
    trials = [{"weights": "per_channel", "keep_float": [], "dice": 0.98, "drop": 0.002}]
    searched = {"tool": "search", "max_dice_drop": 0.0005, "trials": trials}

    def miss(*args, **kwargs):
        raise budget_error(0.0005, 0.002, 1, "worst_image", searched)

    monkeypatch.setattr("unet_pipeline.deploy.job._run_stages", miss)
    record = run_job(tiny_job_cfg(INT8), tmp_path / "job")
    saved = json.loads((tmp_path / "job" / "result.json").read_text())
    assert record["status"] == saved["status"] == "failed" and "not reached" in saved["error"]
    assert saved["quantization"]["accuracy_control"] == searched


def test_drop_of_the_mean_or_of_the_worst_image():
    from unet_pipeline.deploy.stages.quantize import dice_drop

    reference, scores = [0.99, 0.98, 0.97], [0.995, 0.97, 0.97]
    assert dice_drop(reference, scores, "mean") == pytest.approx(0.005 / 3 * -1 + 0.01 / 3)
    assert dice_drop(reference, scores, "worst_image") == pytest.approx(0.01)


def test_openvino_accuracy_control_records_what_it_reverted(tiny_job_cfg, tmp_path):
    record = _per_tensor_drop(tiny_job_cfg, tmp_path, "openvino", "0")
    assert record["status"] in ("completed", "failed")
    if record["status"] == "failed":  # NNCF could not reach a zero drop: said so, in one line
        assert "not reached" in record["error"] and "\n" not in record["error"]
        return
    control = record["quantization"]["accuracy_control"]
    assert control["tool"].startswith("nncf.quantize")
    assert control["reference_dice"] - control["final_dice"] <= 0
    if control["tool"] == "nncf.quantize_with_accuracy_control":
        assert control["initial_dice"] < control["reference_dice"]
        assert set(control["kept_float"]) <= set(record["compiled"]["float_compute_layers"]) | set(
            control["kept_float"]
        )


def test_validation_images_enter_the_key_only_with_a_budget(tiny_job_cfg, tmp_path):
    engine = OpenVINOEngine()
    calib, (val_a, val_b) = _samples(1, 2, tmp_path), _samples(3, 1, tmp_path)[1:]
    val_a, val_b = [val_a], [val_b]

    def parts(cfg, validation):
        spec, _ = with_overflow_fix(engine, build_spec(cfg), isa.host())  # as the job resolves it
        return engine_parts("export", engine, spec, cfg.calibration, calib, validation)

    for sample in calib + val_a + val_b:  # keys hash file contents
        sample.image.write_bytes(sample.id.encode())
        sample.mask.write_bytes(sample.id.encode())
    plain = tiny_job_cfg(INT8, "calibration.validation_samples=5")
    assert parts(plain, None) == parts(tiny_job_cfg(INT8), None)  # validation_samples unused without a budget
    budget = tiny_job_cfg(INT8, "calibration.max_dice_drop=0.001")
    assert parts(budget, val_a) != parts(budget, val_b) and parts(budget, None) != parts(plain, None)


def test_sweep_table_names_each_rows_calibration(tmp_path, tiny_dataset, tiny_checkpoint):
    proc = run_cli(
        "-m",
        *tiny_overrides(tiny_dataset, tiny_checkpoint),
        "precision=qint8_mixed_float32",
        "calibration.method=default,histogram",
        "calibration.keep_float=[last]",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "outputs" / "multirun").iterdir()
    frame = to_frame(load_records(sweep))
    host = isa.host()  # the overflow fix is chosen for the CPU the sweep ran on (tests/test_isa.py)
    bits = {"enable": "7-bit weights", "first_layer": "7-bit first layer"}[
        OpenVINOEngine().auto_overflow_fix(None, host).setting
    ]
    assert list(frame["calibration"]) == [
        f"3 imgs · default · per_channel · act default · float [last] · {bits} ({host.kind})",
        f"3 imgs · histogram · per_channel · act default · float [last] · {bits} ({host.kind})",
    ]
    assert "histogram · per_channel" in (sweep / "results.md").read_text()
    record = json.loads((sweep / "1" / "result.json").read_text())
    assert record["quantization"]["options"]["method"] == "histogram"
    assert np.isfinite(record["metrics"]["dice"])


class _FakeSession:
    def __init__(self, scores: list[float]):
        self.scores = scores


class _FakeValidation:
    """Per-image Dice straight from the fake session: the search logic without any engine."""

    items = ((None, None), (None, None))

    def dice(self, session, items=None):
        return session.scores


class _LayerCostEngine:
    """An engine whose int8 image 0 loses 0.004 / (1 + layers kept in float); float loses nothing."""

    name = "fake"
    capabilities = Capabilities(("force_float32",), ("static",), ("cpu",), "onnx", keep_float=True)

    def compute_layers(self, graph, spec):
        return ["a", "b", "c", "d"]

    def build(self, graph, spec, calibration, out_dir):
        out_dir.mkdir(parents=True)
        artifact = out_dir / "model.json"
        kept = len(spec.quant.keep_float) if spec.precision.quant_bits else None
        artifact.write_text(json.dumps({"kept": kept}))
        return artifact

    def load(self, artifact, spec):
        kept = json.loads(artifact.read_text())["kept"]
        return _FakeSession([0.99, 0.98] if kept is None else [0.99 - 0.004 / (1 + kept), 0.98])


@pytest.mark.parametrize(("metric", "kept"), [("mean", ["d"]), ("worst_image", ["d", "a", "c"])])
def test_search_keeps_the_fewest_layers_that_meet_the_budget(tmp_path, metric, kept):
    from unet_pipeline.deploy.stages.quantize import search_within_drop

    quant = QuantOptions(max_dice_drop=0.0011, drop_metric=metric)
    spec = BuildSpec(Precision("qint8_mixed_float32"), "static", 1, None, (8, 8), 3, "cpu", quant=quant)
    out = tmp_path / "entry"
    out.mkdir()
    artifact, record = search_within_drop(_LayerCostEngine(), tmp_path / "g", spec, [], _FakeValidation(), out, 8)
    assert record["kept_float"] == kept and record["final_drop"] <= 0.0011
    assert [t["drop"] > 0.0011 for t in record["trials"]] == [True] * (len(record["trials"]) - 1) + [False]
    assert artifact == out / "model.json" and json.loads(artifact.read_text())["kept"] == len(kept)
    assert sorted(p.name for p in out.iterdir()) == ["model.json"]  # rejected trials and the reference are gone
    worst = replace(spec, quant=replace(quant, drop_metric="worst_image"))
    with pytest.raises(PipelineError, match=r"best of 2 int8 configurations loses 0\.00200 Dice \(worst_image\)"):
        search_within_drop(_LayerCostEngine(), tmp_path / "g", worst, [], _FakeValidation(), tmp_path / "e2", 2)
