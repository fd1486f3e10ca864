"""milesial-compatible UNet and checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from unet_pipeline.core import PipelineError
from unet_pipeline.data import input_hw
from unet_pipeline.model import UNet, load_unet

from .conftest import write_checkpoint


def model_cfg(**kw):
    base = dict(name="t", n_channels=3, n_classes=2, bilinear=False, base_width=4, scale=0.5)
    return OmegaConf.create({**base, **kw})


def test_milesial_parameter_names_and_size():
    keys = UNet().state_dict().keys()
    for key in (
        "inc.double_conv.0.weight",
        "down4.maxpool_conv.1.double_conv.4.running_var",
        "up1.up.weight",
        "up4.conv.double_conv.3.weight",
        "outc.conv.bias",
    ):
        assert key in keys
    # milesial's README: 31.0 M parameters for the full model (bilinear=False)
    assert sum(p.numel() for p in UNet().parameters()) == pytest.approx(31.04e6, rel=1e-3)


def test_odd_width_output_matches_input():
    out = UNet(base_width=4, bilinear=True).eval()(torch.zeros(1, 3, 40, 59))
    assert out.shape == (1, 2, 40, 59)


def test_checkpoint_roundtrip(tmp_path):
    path = write_checkpoint(tmp_path / "c.pth", base_width=4)
    net, mask_values = load_unet(model_cfg(), path)
    assert mask_values == [0, 1]
    assert torch.equal(net.state_dict()["outc.conv.weight"], torch.load(path)["outc.conv.weight"])
    assert not net.training


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (dict(base_width=8), "has shape"),
        (dict(bilinear=True), "missing keys|has shape"),
        (dict(n_classes=3), "has shape"),
    ],
)
def test_wrong_architecture_is_one_line(tmp_path, cfg, message):
    path = write_checkpoint(tmp_path / "c.pth", base_width=4)
    with pytest.raises(PipelineError, match=message) as info:
        load_unet(model_cfg(**cfg), path)
    assert "\n" not in str(info.value)


def test_not_a_checkpoint_and_missing(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(PipelineError, match="not a readable PyTorch file"):
        load_unet(model_cfg(), junk)
    with pytest.raises(PipelineError, match="checkpoint not found"):
        load_unet(model_cfg(), tmp_path / "absent.pth")


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_code_executing_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"inc.double_conv.0.weight": torch.zeros(1), "x": _Exploit()}, path, pickle_protocol=2)
    with pytest.raises(PipelineError, match=r"needs code execution to load \(print\).*weights_only") as info:
        load_unet(model_cfg(), path)
    assert "\n" not in str(info.value)


def test_input_size_from_scale():
    data = OmegaConf.create(dict(frame_width=1918, frame_height=1280))
    assert input_hw(model_cfg(scale=0.5), data) == (640, 959)
    assert input_hw(model_cfg(scale=0.25), data) == (320, 479)


def test_aligned_input_pads_in_the_graph_and_crops_back():
    from unet_pipeline.model import AlignedInput, with_alignment

    torch.manual_seed(0)
    net = UNet(base_width=4).eval()
    aligned = with_alignment(net, 32)
    assert isinstance(aligned, AlignedInput) and with_alignment(net, 0) is net
    odd = torch.rand(1, 3, 40, 59)
    with torch.no_grad():
        assert aligned(odd).shape == (1, 2, 40, 59)  # the host feeds and scores the original size
        even = torch.rand(1, 3, 64, 96)
        assert torch.equal(aligned(even), net(even))  # already aligned: nothing changes
    with pytest.raises(PipelineError, match=r"model\.align=12"):
        with_alignment(net, 12)


def test_align_is_recorded_and_part_of_the_export_key(tiny_job_cfg, tmp_path):
    from unet_pipeline.deploy import run_job

    plain = run_job(tiny_job_cfg("model.scale=0.6"), tmp_path / "plain")
    aligned = run_job(tiny_job_cfg("model.scale=0.6", "model.align=16"), tmp_path / "aligned")
    assert plain["status"] == aligned["status"] == "completed"
    assert aligned["job"]["align"] == 16 and aligned["job"]["input_size"] == plain["job"]["input_size"]
    assert aligned["cache"]["export"]["key"] != plain["cache"]["export"]["key"]


@pytest.mark.parametrize(
    ("model", "precision", "align"),
    [
        ("unet_carvana_small", "qint8_mixed_float32", 32),  # measured: int8 1.9x aligned at 320x479
        ("unet_carvana_small", "force_float32", 0),  # fp32 slower aligned, bf16 the same: left as is
        ("unet_demo", "qint8_mixed_float16", 32),
        ("unet_demo", "force_bfloat16", 0),
        ("unet_carvana", "force_float32", 32),  # the sample's 640x959: aligned for every precision
    ],
)
def test_align_defaults_to_where_it_was_measured_faster(compose_cfg, model, precision, align):
    assert compose_cfg([f"model={model}", f"precision={precision}"]).model.align == align
    assert compose_cfg([f"model={model}", f"precision={precision}", "model.align=16"]).model.align == 16


@pytest.mark.parametrize(
    ("model", "precision", "input_format"),
    [
        ("unet_carvana_small", "qint8_mixed_float32", "uint8_nhwc"),  # /255 folded: Dice identical, less host work
        ("unet_carvana_small", "force_bfloat16", "float_nchw"),  # folded in bf16 it moved Dice by -0.0001
        ("unet_demo", "qint8_mixed_float16", "uint8_nhwc"),
        ("unet_demo", "force_float32", "float_nchw"),
        ("unet_carvana", "qint8_mixed_float16", "float_nchw"),  # the full-width model: not measured folded
    ],
)
def test_input_format_defaults_to_folded_for_int8_on_the_compact_models(compose_cfg, model, precision, input_format):
    cfg = compose_cfg([f"model={model}", f"precision={precision}"])
    assert cfg.model.input_format == input_format
    other = "float_nchw" if input_format == "uint8_nhwc" else "uint8_nhwc"
    assert (
        compose_cfg([f"model={model}", f"precision={precision}", f"model.input_format={other}"]).model.input_format
        == other
    )
