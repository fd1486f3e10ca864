"""Start a wider UNet from a narrower one's weights without changing what it computes (Net2Net-style).

Why: training a wider student from random weights at 640x959 costs hours on 2 cores; embedded this way it
begins exactly where the narrow weights are (same logits) and spends its epochs on what the new channels add.
Every layer keeps the narrow net's channels first. The new channels get the wide net's own random
initialisation for what they compute, and zero weights wherever they feed an old channel. So at the start
nothing downstream sees them, and their outgoing weights get gradients from the first step on."""

from __future__ import annotations

import torch
from torch import nn

from unet_pipeline.core import PipelineError
from unet_pipeline.model import UNet


def base_width_of(state: dict[str, torch.Tensor]) -> int:
    """The `base_width` of a milesial-format state_dict (channels of its first convolution)."""
    try:
        return int(state["inc.double_conv.0.weight"].shape[0])
    except KeyError:
        raise PipelineError("checkpoint has no inc.double_conv.0.weight: not a milesial UNet state_dict") from None


def _input_channels(name: str, old_in: int, new_in: int) -> torch.Tensor:
    """Where each of the narrow layer's input channels sits in the wide layer.

    An `Up` block's first convolution reads cat([skip, upsampled]), two halves that widen apart; every other
    layer reads one tensor whose old channels come first.
    """
    if name.endswith(".conv.double_conv.0") and name.startswith("up"):
        half_old, half_new = old_in // 2, new_in // 2
        return torch.cat([torch.arange(half_old), half_new + torch.arange(half_old)])
    return torch.arange(old_in)


def widen_into(net: UNet, state: dict[str, torch.Tensor]) -> UNet:
    """Load the narrower `state` into `net` (same depth, `bilinear` and classes, base width >= its own)."""
    if net.bilinear:
        raise PipelineError("widening supports bilinear=false UNets (ConvTranspose2d upsampling) only")
    old_w, new_w = base_width_of(state), net.inc.double_conv[0].out_channels
    if old_w > new_w:
        raise PipelineError(f"cannot widen base width {old_w} into {new_w}; pick model.base_width>={old_w}")
    missing = sorted(set(net.state_dict()) - set(state))
    if missing:
        raise PipelineError(f"checkpoint does not match the UNet: {len(missing)} missing keys (e.g. {missing[:2]})")
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                _widen_conv(name, module, state)
            elif isinstance(module, nn.BatchNorm2d):
                n = state[f"{name}.weight"].shape[0]
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(module, key)[:n] = state[f"{name}.{key}"]
                module.num_batches_tracked.copy_(state[f"{name}.num_batches_tracked"])
    return net


def _widen_conv(name: str, conv: nn.Conv2d | nn.ConvTranspose2d, state: dict[str, torch.Tensor]) -> None:
    old = state[f"{name}.weight"]
    transposed = isinstance(conv, nn.ConvTranspose2d)  # weight is (in, out, k, k) rather than (out, in, k, k)
    weight = conv.weight.transpose(0, 1) if transposed else conv.weight  # a view: writes reach the module
    old = old.transpose(0, 1) if transposed else old
    old_out, old_in = old.shape[:2]
    inputs = _input_channels(name, old_in, weight.shape[1])
    weight[:old_out] = 0  # the old outputs read nothing from new inputs ...
    weight[:old_out, inputs] = old  # ... and exactly what they read before from the old ones
    if conv.bias is not None:
        conv.bias[:old_out] = state[f"{name}.bias"]
