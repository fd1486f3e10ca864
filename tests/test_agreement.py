"""Every engine x precision on one fixed batch of images, against PyTorch fp32."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module

from unet_pipeline.core import isa
from unet_pipeline.data import Preprocessing, ensure_configured, input_hw
from unet_pipeline.deploy.agreement import compare_engines, disagreements, engine_names, fixed_batch, instantiate_engine
from unet_pipeline.model import load_unet

from .conftest import CARVANA

# ~70 s of exports and int8 builds on the 2-core AVX2 host: slow, to keep the default suite near 15 minutes; every
# engine's fp32 Dice agreement stays in the default suite (test_job.py::test_every_engine_gives_the_same_fp32_dice)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agreement_rows(tmp_path_factory):
    """Real Carvana images with the bundled Carvana model where ../shared exists, else the synthetic demo."""
    if (CARVANA / "imgs").is_dir():
        overrides = ["model=unet_carvana_small", f"data.root={CARVANA}"]
    else:
        overrides = ["model=unet_demo", f"data.synthetic.root={tmp_path_factory.mktemp('demo')}"]
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        cfg = compose("pipeline", overrides=overrides)
    ensure_configured(cfg.data)
    net, _ = load_unet(cfg.model, cfg.model.checkpoint)
    prep = Preprocessing.of(cfg.model, cfg.data)
    images, masks, calibration = fixed_batch(cfg.data, input_hw(cfg.model, cfg.data), 2, 8, prep)
    return compare_engines(net, images, masks, calibration)


def test_every_engine_is_checked(agreement_rows):
    assert {"openvino", "onnxruntime", "torch", "magicmind"} <= set(engine_names())
    on_cpu = {n for n in engine_names() if "cpu" in instantiate_engine(n).capabilities.devices}
    fp32 = {r["engine"] for r in agreement_rows if r["precision"] == "force_float32" and r["status"] == "ok"}
    assert fp32 == {"pytorch-eager", *on_cpu}
    assert {r["status"] for r in agreement_rows if r["engine"] == "magicmind"} == {"unsupported"}  # MLU only


def test_fp32_engines_agree_with_pytorch(agreement_rows):
    assert disagreements(agreement_rows) == []


def test_int8_engines_stay_close(agreement_rows):
    """With the overflow fix this CPU's int8 kernels need (tests/test_isa.py covers every CPU class)."""
    int8 = [r for r in agreement_rows if r["precision"] == "qint8_mixed_float32" and r["status"] == "ok"]
    assert {r["engine"] for r in int8} == {"openvino", "onnxruntime"}
    host = isa.host()
    for row in int8:
        assert row["overflow_fix"] == (
            "enable" if host.saturates else {"openvino": "first_layer"}.get(row["engine"], "disable")
        )
        assert row["flipped_pixels"] < 0.02, (
            f"{row['engine']} int8 ({row['overflow_fix']} overflow fix, {host.describe()}) flips "
            f"{row['flipped_pixels']:.2%} of pixels"
        )


def test_unsupported_pairs_are_reported_not_run(agreement_rows):
    by_pair = {(r["engine"], r["precision"]): r for r in agreement_rows}
    assert by_pair[("torch", "qint8_mixed_float32")]["status"] == "unsupported"
    assert by_pair[("openvino", "qint16_mixed_float32")]["status"] == "unsupported"
    assert "supported:" in by_pair[("torch", "qint8_mixed_float32")]["reason"]
