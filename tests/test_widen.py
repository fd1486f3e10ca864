"""Widening: a wider UNet started from narrower weights computes exactly what they did, then trains."""

from __future__ import annotations

import pytest
import torch

from unet_pipeline.core import PipelineError
from unet_pipeline.model import UNet
from unet_pipeline.training import train
from unet_pipeline.training.widen import widen_into

from .test_train import TINY_TRAIN


def _narrow(width: int) -> UNet:
    """Random weights with BatchNorm statistics and affines far from their defaults, so they matter."""
    torch.manual_seed(0)
    net = UNet(base_width=width)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.3, 0.3)
    return net


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_unet_computes_what_the_narrow_one_did(mode):
    narrow = _narrow(4)
    wide = widen_into(UNet(base_width=6), narrow.state_dict())
    x = torch.rand(2, 3, 37, 53)  # odd sizes: the Up blocks pad, the concatenation halves widen apart
    narrow.train(mode == "train")
    wide.train(mode == "train")
    with torch.no_grad():
        want, got = narrow(x), wide(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert sum(p.numel() for p in wide.parameters()) > 2 * sum(p.numel() for p in narrow.parameters())


def test_the_new_channels_learn():
    """Silent at the start is not dead: one optimizer step makes the wide net differ from the narrow one."""
    narrow = _narrow(4).eval()
    wide = widen_into(UNet(base_width=6), narrow.state_dict()).train()
    x, y = torch.rand(2, 3, 32, 48), torch.randint(0, 2, (2, 32, 48))
    optimizer = torch.optim.SGD([p for n, p in wide.named_parameters() if "outc" not in n], lr=0.1)
    torch.nn.functional.cross_entropy(wide(x), y).backward()
    new_rows = wide.up4.conv.double_conv[3].weight.grad[:4, 4:]  # old outputs reading new inputs
    assert new_rows.abs().max() > 0
    optimizer.step()
    wide.eval()
    with torch.no_grad():
        assert not torch.allclose(wide(x), narrow(x), atol=1e-4)


def test_widening_into_a_narrower_unet_is_refused():
    with pytest.raises(PipelineError, match="cannot widen base width 6 into 4"):
        widen_into(UNet(base_width=4), UNet(base_width=6).state_dict())


def test_training_starts_from_narrower_weights_taught_by_narrower_teachers(compose_cfg, train_data, tmp_path,
                                                                           tiny_checkpoint):  # fmt: skip
    """`train.init_widen` and a teacher's own `base_width`: a base-6 student from base-4 weights and teacher."""
    teachers = f"train.teachers=[{{checkpoint:{tiny_checkpoint},scale:0.5,base_width:4}}]"
    overrides = [*TINY_TRAIN, "model.base_width=6", f"data.root={train_data}", "train.epochs=1",
                 f"train.init_checkpoint={tiny_checkpoint}", teachers]  # fmt: skip
    with pytest.raises(PipelineError, match=r"model.base_width=6"):  # without init_widen: one line, the widths
        train(compose_cfg(overrides, "train"), tmp_path / "exact")
    summary = train(compose_cfg([*overrides, "train.init_widen=true"], "train"), tmp_path / "run")
    state = torch.load(tmp_path / "run" / "best.pth", weights_only=True)
    assert state["inc.double_conv.0.weight"].shape[0] == 6
    assert summary["teachers"][0]["base_width"] == 4 and 0 < summary["best_val_dice"] <= 1
