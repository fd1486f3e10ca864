"""The inference loop: prefetching and reduced JPEG decoding change speed, never which images or their order."""

from __future__ import annotations

import cv2
import pytest

from unet_pipeline.data import Preprocessing, read_input
from unet_pipeline.data.images import reduced_decode_flag
from unet_pipeline.deploy import run_job

from .conftest import CARVANA, needs_carvana


@pytest.mark.parametrize(
    ("target", "flag"),
    [
        ((640, 959), cv2.IMREAD_REDUCED_COLOR_2),  # the sample's size: exactly half of 1918x1280
        ((320, 479), cv2.IMREAD_REDUCED_COLOR_4),
        ((160, 240), cv2.IMREAD_REDUCED_COLOR_8),
        ((641, 959), cv2.IMREAD_COLOR),  # a reduced decode would be smaller than the model input
        ((1280, 1918), cv2.IMREAD_COLOR),
    ],
)
def test_reduced_decode_never_goes_below_the_model_size(target, flag):
    assert reduced_decode_flag((1280, 1918), target) == flag


def test_feed_settings_and_reduced_decode_keep_ids_order_and_records(tiny_job_cfg, tmp_path):
    common = ("batch=2", "model.scale=0.5")
    serial = run_job(tiny_job_cfg("data.workers=0", "data.prefetch_batches=0", *common), tmp_path / "serial")
    ahead = run_job(tiny_job_cfg("data.workers=3", "data.prefetch_batches=3", *common), tmp_path / "ahead")
    reduced = run_job(tiny_job_cfg("data.decode=reduced", *common), tmp_path / "reduced")
    assert serial["status"] == ahead["status"] == reduced["status"] == "completed"
    assert (tmp_path / "serial" / "per_image.csv").read_text() == (tmp_path / "ahead" / "per_image.csv").read_text()
    assert (ahead["job"]["workers"], ahead["job"]["prefetch_batches"]) == (3, 3)
    assert reduced["job"]["decode"] == "reduced" and serial["job"]["decode"] == "full"
    ids = [line.split(",")[0] for line in (tmp_path / "reduced" / "per_image.csv").read_text().splitlines()]
    assert ids == [line.split(",")[0] for line in (tmp_path / "serial" / "per_image.csv").read_text().splitlines()]
    e2e = reduced["benchmark"]["end_to_end"]
    assert e2e["preprocess_ms_per_image"] > 0 and e2e["postprocess_ms_per_image"] > 0
    assert e2e["feed_wait_ms_per_image"] >= 0 and 0 < e2e["engine_share"] < 1


@needs_carvana()
def test_reduced_decode_is_close_to_full_decode_on_a_real_frame():
    path = sorted((CARVANA / "imgs").glob("*.jpg"))[0]
    for hw in ((640, 959), (320, 479)):
        full, source = read_input(path, hw, Preprocessing(reduced=False))
        fast, same_source = read_input(path, hw, Preprocessing(reduced=True))
        assert source == same_source == (1280, 1918) and full.shape == fast.shape == (3, *hw)
        # DCT scaling vs full decode + bicubic: ~2 grey levels on average at 1/4 (0.0076), ~0.5 at 1/2 (0.0018);
        # a wrong channel order or scale would be tens of levels. Dice decides (benchmark/perf.py measures it).
        assert abs(full - fast).mean() < 0.01


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime", "torch"])
def test_uint8_nhwc_input_gives_the_same_dice_as_float_input(engine, tiny_job_cfg, tmp_path):
    """/255 and the layout change inside the model compute exactly what the host did."""
    floats = run_job(tiny_job_cfg(f"engine={engine}"), tmp_path / "float")
    pixels = run_job(tiny_job_cfg(f"engine={engine}", "model.input_format=uint8_nhwc"), tmp_path / "uint8")
    assert floats["status"] == pixels["status"] == "completed", pixels["error"]
    assert pixels["job"]["input_format"] == "uint8_nhwc"
    assert pixels["metrics"]["dice"] == pytest.approx(floats["metrics"]["dice"], abs=1e-6)
    assert pixels["cache"]["export"]["key"] != floats["cache"]["export"]["key"]


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_uint8_nhwc_int8_quantizes(engine, tiny_job_cfg, tmp_path):
    overrides = (f"engine={engine}", "model.input_format=uint8_nhwc", "precision=qint8_mixed_float32")
    record = run_job(tiny_job_cfg(*overrides), tmp_path / "j")
    assert record["status"] == "completed", record["error"]
    assert record["compiled"]["quantized_layer_share"] > 0.5


def test_input_cache_is_shared_across_jobs_and_never_changes_a_figure(tiny_job_cfg, tmp_path):
    cold = run_job(tiny_job_cfg("data.cache_inputs=true"), tmp_path / "cold")
    warm = run_job(tiny_job_cfg("data.cache_inputs=true", "precision=qint8_mixed_float32"), tmp_path / "warm")
    plain = run_job(tiny_job_cfg(), tmp_path / "plain")
    n = cold["metrics"]["num_images"]
    assert cold["benchmark"]["end_to_end"]["input_cache"] == {"hits": 0, "misses": n}
    assert warm["benchmark"]["end_to_end"]["input_cache"] == {"hits": n, "misses": 0}  # another job, same inputs
    assert plain["benchmark"]["end_to_end"]["input_cache"] is None
    assert (tmp_path / "cold" / "per_image.csv").read_text() == (tmp_path / "plain" / "per_image.csv").read_text()
    entries = sorted((tmp_path / "cache" / "inputs").glob("*.bin"))
    assert len(entries) == n
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # damaged on disk: recomputed, never trusted
    again = run_job(tiny_job_cfg("data.cache_inputs=true"), tmp_path / "again")
    assert again["benchmark"]["end_to_end"]["input_cache"] == {"hits": n - 1, "misses": 1}
    assert (tmp_path / "again" / "per_image.csv").read_text() == (tmp_path / "plain" / "per_image.csv").read_text()
