"""One job end to end on the OpenVINO engine: records, precision honesty, batching, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from unet_pipeline.core import PipelineError
from unet_pipeline.deploy.job import RESULT_FILE, build_spec, run_job
from unet_pipeline.deploy.stages.export import export_graph
from unet_pipeline.engines import BuildSpec, Precision
from unet_pipeline.engines.openvino import OpenVINOEngine
from unet_pipeline.model import UNet

from .conftest import CARVANA, needs_carvana


def per_image(out_dir):
    table = pd.read_csv(out_dir / "per_image.csv", dtype={"dice": str})
    return dict(zip(table["image_id"], table["dice"], strict=True))


def test_precision_parts():
    p = Precision("qint8_mixed_float16")
    assert (p.quant_bits, p.float_type, p.needs_calibration) == (8, "float16", True)
    p = Precision("force_bfloat16")
    assert (p.quant_bits, p.float_type, p.needs_calibration) == (None, "bfloat16", False)
    assert Precision("qint16_mixed_float32").quant_bits == 16


def test_openvino_fp32_matches_pytorch(tmp_path):
    torch.manual_seed(1)
    net = UNet(base_width=4).eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    spec = BuildSpec(Precision("force_float32"), "dynamic", 2, (1, 8), (48, 71), 3, "cpu")
    engine = OpenVINOEngine()
    graph = export_graph(net, engine.capabilities.export_format, spec, tmp_path / "export")
    session = engine.load(engine.build(graph, spec, None, tmp_path / "engine"), spec)
    x = np.random.default_rng(0).random((2, 3, 48, 71), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.infer(x), expected, atol=1e-4, rtol=1e-4)
    assert session.describe()["inference_precision"] == "float32"


def test_fp32_job_record(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg(), tmp_path / "job", ["precision=force_float32"])
    assert record["status"] == "completed", record["error"]
    on_disk = json.loads((tmp_path / "job" / RESULT_FILE).read_text())
    assert on_disk["status"] == "completed" and on_disk["error"] is None
    job = on_disk["job"]
    assert job["engine"] == "openvino" and job["engine_version"]
    assert job["precision"] == "force_float32" and job["batch"] == 1 and job["shape"] == "static"
    assert len(job["checkpoint_sha256"]) == 64 and job["overrides"] == ["precision=force_float32"]
    assert on_disk["metrics"]["num_images"] == 6  # 2 held-out cars x 3 views
    assert 0.0 <= on_disk["metrics"]["dice"] <= 1.0
    assert {"export", "build", "inference", "total"} <= set(on_disk["timings"])
    assert on_disk["versions"]["openvino"] and on_disk["compiled"]["inference_precision"] == "float32"
    assert len(per_image(tmp_path / "job")) == 6


def test_int8_job_is_really_int8(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("precision=qint8_mixed_float32"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["quantized_layer_share"] > 0.5
    assert record["compiled"]["inference_precision"] == "float32"
    assert record["data"]["calibration_images"] == 3
    assert record["data"]["calibration_overlaps_eval"] is False


def test_calibration_overlap_is_recorded(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("precision=qint8_mixed_float32", "data.split=all"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["data"]["calibration_overlaps_eval"] is True


@pytest.mark.parametrize(
    "overrides", [["batch=4"], ["batch=4", "shape=dynamic"], ["batch=5", "shape=dynamic", "shape.batch_min=5"]]
)
def test_partial_batches_give_the_same_per_image_dice(tiny_job_cfg, tmp_path, overrides):
    run_job(tiny_job_cfg("batch=1"), tmp_path / "b1")
    batched = run_job(tiny_job_cfg(*overrides), tmp_path / "bn")
    assert batched["status"] == "completed", batched["error"]
    ref, got = per_image(tmp_path / "b1"), per_image(tmp_path / "bn")
    assert ref.keys() == got.keys()
    assert max(abs(float(ref[k]) - float(got[k])) for k in ref) < 1e-4


def test_float_type_the_cpu_lacks_is_refused_or_run(tiny_job_cfg, tmp_path):
    native = OpenVINOEngine().native_float_types()
    record = run_job(tiny_job_cfg("precision=force_bfloat16"), tmp_path / "strict")
    if "bfloat16" in native:
        assert record["status"] == "completed"
        assert record["compiled"]["inference_precision"] == "bfloat16"
    else:
        assert record["status"] == "failed"
        assert "no native bfloat16" in record["error"] and "strict_precision=false" in record["error"]
        loose = run_job(tiny_job_cfg("precision=force_bfloat16", "strict_precision=false"), tmp_path / "loose")
        assert loose["status"] == "completed"
        assert loose["compiled"]["inference_precision"] == "float32"
        assert any("not the requested bfloat16" in note for note in loose["notes"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["precision=qint16_mixed_float32"], "does not support precision=qint16_mixed_float32; supported: force_"),
        (["batch=0"], "batch=0 must be a positive integer"),
        (["shape=dynamic", "batch=65"], "outside the dynamic range 1..64"),
        (["batch=7"], "larger than the 6 evaluation images"),
        (["model.checkpoint=null"], "has no weights: pass model.checkpoint="),
        (["data.root=null"], "data.root is not set"),
        (["precision=qint8_mixed_float32", "calibration.num_samples=0"], "must be positive"),
    ],
)
def test_failures_are_recorded_in_one_line(tiny_job_cfg, tmp_path, overrides, message):
    record = run_job(tiny_job_cfg(*overrides), tmp_path / "job")
    assert record["status"] == "failed"
    assert message in record["error"] and "\n" not in record["error"]
    assert json.loads((tmp_path / "job" / RESULT_FILE).read_text())["error"] == record["error"]


def test_build_spec_static_and_dynamic(compose_cfg):
    spec = build_spec(compose_cfg(["model=unet_carvana", "batch=4"]))
    assert (spec.shape, spec.batch_dims, spec.input_hw) == ("static", (4, 4), (640, 959))
    spec = build_spec(compose_cfg(["model=unet_carvana", "batch=4", "shape=dynamic"]))
    assert spec.batch_dims == (1, 64)
    with pytest.raises(PipelineError):
        build_spec(compose_cfg(["batch=-1"]))


@needs_carvana()
@pytest.mark.parametrize("precision", ["force_float32", "qint8_mixed_float16"])
def test_real_carvana_job(compose_cfg, tiny_checkpoint, tmp_path, precision):
    cfg = compose_cfg(
        [
            f"data.root={CARVANA}",
            f"model.checkpoint={tiny_checkpoint}",
            "model.base_width=4",
            "model.scale=0.1",
            "data.num_images=4",
            "calibration.num_samples=4",
            "progress=false",
            f"precision={precision}",
        ]
    )
    record = run_job(cfg, tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["num_images"] == 4 and record["job"]["input_size"] == [128, 191]
    assert record["data"]["eval_cars"] >= 2
    if precision.startswith("qint8"):
        assert record["compiled"]["quantized_layer_share"] > 0.5
        assert record["data"]["calibration_overlaps_eval"] is False
    assert OmegaConf.create(record["config"]).precision.mode == precision


def test_random_weights_give_speed_but_no_dice(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("model.checkpoint=random"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["metrics"]["dice"] is None and record["metrics"]["num_images"] == 6
    assert record["benchmark"]["end_to_end"]["throughput_ips"] > 0
    assert any("Dice not applicable" in note for note in record["notes"])


def test_model_without_weights_says_how_to_get_them(compose_cfg, tmp_path, tiny_dataset):
    cfg = compose_cfg(["model=unet_carvana", f"data.root={tiny_dataset}", "progress=false"])
    record = run_job(cfg, tmp_path / "job")
    assert record["status"] == "failed"
    assert record["error"].startswith("model=unet_carvana has no weights: pass model.checkpoint=")


@pytest.mark.parametrize("engine", ["onnxruntime", "torch"])
def test_every_engine_gives_the_same_fp32_dice(tiny_job_cfg, tmp_path, engine):
    run_job(tiny_job_cfg("engine=openvino", "batch=2", "shape=dynamic"), tmp_path / "ov")
    other = run_job(tiny_job_cfg(f"engine={engine}", "batch=2", "shape=dynamic"), tmp_path / engine)
    assert other["status"] == "completed", other["error"]
    assert other["job"]["engine"] == engine and other["compiled"]["inference_precision"] == "float32"
    ref, got = per_image(tmp_path / "ov"), per_image(tmp_path / engine)
    assert max(abs(float(ref[k]) - float(got[k])) for k in ref) < 1e-4


@pytest.mark.parametrize("shape", ["static", "dynamic"])
def test_onnxruntime_int8_is_qdq_int8(tiny_job_cfg, tmp_path, shape):
    record = run_job(
        tiny_job_cfg("engine=onnxruntime", "precision=qint8_mixed_float32", "batch=4", f"shape={shape}"),
        tmp_path / "job",
    )
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["quantized_layer_share"] > 0.9
    assert record["compiled"]["providers"] == ["CPUExecutionProvider"]


def test_torch_bf16_really_computes_in_bf16(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("engine=torch", "precision=force_bfloat16"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["inference_precision"] == "bfloat16"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["engine=onnxruntime", "precision=force_float16"], "CPU execution provider has no float16"),
        (["engine=torch", "precision=qint8_mixed_float16"], "engine=torch does not support precision=qint8"),
        (["device=cuda", "engine=onnxruntime"], "needs ONNX Runtime's CUDAExecutionProvider"),
    ],
)
def test_engine_refusals_are_one_line(tiny_job_cfg, tmp_path, overrides, message):
    record = run_job(tiny_job_cfg(*overrides), tmp_path / "job")
    assert record["status"] == "failed" and message in record["error"] and "\n" not in record["error"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_gpu_is_refused(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("device=cuda"), tmp_path / "job")
    assert record["status"] == "failed" and "sees no CUDA GPU" in record["error"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU visible to torch (CI is CPU-only)")
@pytest.mark.parametrize("precision", ["force_float32", "force_float16"])
def test_cuda_torch_job(tiny_job_cfg, tmp_path, precision):
    record = run_job(tiny_job_cfg("device=cuda", f"precision={precision}"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["device"].startswith("cuda")


def test_benchmark_figures_are_recorded_and_self_describing(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("batch=2", "benchmark.iterations=5"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    engine = record["benchmark"]["engine"]
    assert engine["mode"] == "sync" and engine["requests"] == 1 and engine["batch"] == 2
    assert engine["iterations"] >= 5 and engine["seconds"] >= 0.1 and engine["warmup"]["iterations"] >= 1
    lat = engine["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] and lat["std"] >= 0
    assert engine["throughput_ips"] == pytest.approx(2 * engine["iterations"] / engine["seconds"], rel=0.01)
    assert engine["capped"] is False and engine["budget"]["min_calls"] == 5
    run_async = record["benchmark"]["engine_async"]  # OpenVINO: AsyncInferQueue, under the same budget
    assert run_async["requests"] == 2 and run_async["warmup"]["iterations"] == 2
    assert run_async["iterations"] >= 5 and run_async["seconds"] >= 0.1 and run_async["capped"] is False
    e2e = record["benchmark"]["end_to_end"]
    assert e2e["throughput_ips"] > 0 and e2e["preprocess_ms_per_image"] > 0 and e2e["images"] == 6
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["cpu_model"]
    assert record["compiled"]["num_threads"] >= 1


def test_full_resolution_dice_is_recorded_and_can_be_turned_off(tiny_job_cfg, tmp_path):
    on = run_job(tiny_job_cfg("benchmark.enabled=false"), tmp_path / "on")
    assert 0 <= on["metrics"]["dice_full_min"] <= on["metrics"]["dice_full"] <= 1
    assert on["benchmark"]["end_to_end"]["fullres_ms_per_image"] > 0
    assert "dice_full" in pd.read_csv(tmp_path / "on" / "per_image.csv")
    off = run_job(tiny_job_cfg("benchmark.enabled=false", "metrics.full_resolution=false"), tmp_path / "off")
    assert off["metrics"]["dice_full"] is None and off["benchmark"]["end_to_end"]["fullres_ms_per_image"] is None
    assert off["metrics"]["dice"] == on["metrics"]["dice"]


def test_repeats_alternate_engine_rounds_and_end_to_end_passes(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("benchmark.repeats=3", "data.cache_inputs=true"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    engine, e2e = record["benchmark"]["engine"], record["benchmark"]["end_to_end"]
    assert len(engine["rounds_ips"]) == len(e2e["passes_ips"]) == 3
    assert engine["throughput_ips"] == sorted(engine["rounds_ips"])[1]  # the median round's own figures
    assert e2e["throughput_ips"] == sorted(e2e["passes_ips"])[1]
    pairs = sorted(p / e for p, e in zip(e2e["passes_ips"], engine["rounds_ips"], strict=True))
    assert e2e["vs_engine"] == pytest.approx(pairs[1])  # taken pair by pair, not median over median
    n = record["metrics"]["num_images"]
    assert e2e["input_cache"] == {"hits": 2 * n, "misses": n}  # the first pass filled what the others read
    assert not any("differed between timing passes" in note for note in record["notes"])


def test_median_rounds_pairs_each_pass_with_its_round():
    from unet_pipeline.deploy.stages.benchmark import median_rounds
    from unet_pipeline.record import EndToEnd, EngineTiming

    rounds = [EngineTiming("sync", 1, iterations=i, throughput_ips=x) for i, x in enumerate([10.0, 30.0, 20.0, 40.0])]
    passes = [EndToEnd(x, 0.0, 0.0, 0.0, None, 1.0, 1, 1.0) for x in (9.0, 27.0, 19.0, 40.0)]
    engine, e2e = median_rounds(rounds, passes)
    assert engine.iterations == 2 and engine.rounds_ips == [10.0, 30.0, 20.0, 40.0]  # lower middle of four
    assert e2e.throughput_ips == 19.0 and e2e.vs_engine == pytest.approx((0.9 + 0.95) / 2)


def test_benchmark_can_be_switched_off(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("benchmark.enabled=false", "engine=onnxruntime"), tmp_path / "job")
    assert record["status"] == "completed", record["error"]
    assert record["benchmark"]["engine"] is None and record["benchmark"]["end_to_end"]["throughput_ips"] > 0
    assert "benchmark" not in record["timings"]


def test_device_lock_serialises_timing(tmp_path):
    import threading
    import time

    from unet_pipeline.deploy.stages.benchmark import device_lock

    spans = []

    def hold():
        with device_lock("cpu", str(tmp_path)) as waited:
            start = time.perf_counter()
            time.sleep(0.2)
            spans.append((start, time.perf_counter(), waited))

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (_, a1, _), (b0, _, waited) = sorted(spans)
    assert b0 >= a1 and waited >= 0.15  # the second waited, and its wait is reported apart


def test_vendor_benchmark_app_on_the_same_model(tiny_job_cfg, tmp_path):
    from unet_pipeline.deploy.stages.benchmark import find_tool

    if find_tool("benchmark_app") is None:
        pytest.skip("OpenVINO's benchmark_app is neither on PATH nor beside the interpreter")
    record = run_job(tiny_job_cfg("benchmark.vendor_tool=true", "benchmark.vendor_seconds=1"), tmp_path / "job")
    vendor = record["benchmark"]["vendor"]
    assert vendor["returncode"] == 0, vendor
    assert Path(vendor["command"][0]).name == "benchmark_app"
    assert vendor["throughput_ips"] > 0 and vendor["latency_ms_p50"] > 0


def test_vendor_tool_is_found_beside_the_interpreter_and_its_absence_said(monkeypatch, tmp_path):
    """`venv/bin/python -m unet_pipeline` with the venv not activated: benchmark_app sits beside the interpreter."""
    from unet_pipeline.deploy.stages import benchmark

    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    tool = bindir / "benchmark_app"
    tool.write_text("#!/bin/sh\necho 'Throughput: 5.5 FPS'\n")
    tool.chmod(0o755)
    monkeypatch.setattr(benchmark.sys, "executable", str(bindir / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert benchmark.find_tool("benchmark_app") == str(tool)
    found = benchmark.run_vendor_tool(["benchmark_app", "-m", "x"], lambda out: {"out": out.strip()}, timeout=30)
    assert found.returncode == 0 and found.figures["out"] == "Throughput: 5.5 FPS" and found.command[0] == str(tool)
    missing = benchmark.run_vendor_tool(["mm_run", "--magicmind_model", "x"], lambda out: {}, timeout=30)
    assert missing.error == f"mm_run not found on PATH or beside {bindir / 'python'}"


def test_an_engine_without_a_vendor_tool_says_so(tiny_job_cfg, tmp_path):
    record = run_job(tiny_job_cfg("engine=onnxruntime", "benchmark.vendor_tool=true"), tmp_path / "job")
    assert record["status"] == "completed" and record["benchmark"]["vendor"] is None
    assert "benchmark.vendor_tool: engine=onnxruntime has no vendor benchmark tool" in record["notes"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.scale=0", "model.scale=0.0 must be in (0, 1]"),
        ("model.scale=-0.5", "model.scale=-0.5 must be in (0, 1]"),
        ("model.scale=1.5", "model.scale=1.5 must be in (0, 1]"),
        ("model.base_width=0", "model.base_width=0 must be a positive integer"),
        ("data.val_fraction=0", "data.val_fraction=0.0 must be in (0, 1]"),
        ("data.num_images=0", "data.num_images=0 must be a positive integer, or null"),
        ("benchmark.iterations=0", "benchmark.iterations=0 must be a positive integer"),
        ("benchmark.min_seconds=-1", "benchmark.min_seconds=-1.0 must be 0 or more seconds"),
        ("calibration.search_trials=0", "calibration.search_trials=0 must be a positive integer"),
    ],
)
def test_numeric_values_out_of_range_are_one_line_before_any_work(tiny_job_cfg, tmp_path, override, message):
    record = run_job(tiny_job_cfg(override), tmp_path / "job")
    assert record["status"] == "failed" and record["error"].startswith(message) and "\n" not in record["error"]
    assert set(record["timings"]) == {"total"} and record["job"]["engine"] is None  # nothing was started


def test_benchmark_app_report_units():
    from unet_pipeline.engines.openvino import parse_benchmark_app

    fast = "[ INFO ]    Median:        756.94 us\n[ INFO ]    Max:  2.5 ms\n[ INFO ] Throughput:   1273.43 FPS"
    parsed = parse_benchmark_app(fast)
    assert parsed["latency_ms_p50"] == pytest.approx(0.75694) and parsed["latency_ms_max"] == 2.5
    assert parsed["throughput_ips"] == 1273.43 and parsed["latency_ms_mean"] is None
