"""The graph a deployment exports: the UNet with its input padded to `model.align` (cropped back after), and, for
`model.input_format=uint8_nhwc`, raw pixels in with /255 and the layout change folded into the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from unet_pipeline.core import PipelineError


class AlignedInput(nn.Module):
    """Pads the input to a multiple of `align` inside the graph, runs the net, crops the logits back.

    Why: convolution kernels run fastest on aligned widths; the sample's 959 halves to 479, 239, 119, 59,
    while 960 halves evenly. The host still feeds (and scores) HxW; only the engine sees the padded size.
    """

    def __init__(self, net: nn.Module, align: int):
        super().__init__()
        self.net, self.align = net, align

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.align, (-w) % self.align
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.net(x)[..., :h, :w]


def with_alignment(net: nn.Module, align: int) -> nn.Module:
    """`model.align`: 0 = the net as it is; 16 or 32 = pad to that multiple in the graph (AlignedInput)."""
    if align == 0:
        return net
    if align not in (8, 16, 32, 64):
        raise PipelineError(f"model.align={align} must be 0 (off) or one of 8, 16, 32, 64")
    return AlignedInput(net, align).eval()


class UInt8NHWCInput(nn.Module):
    """Takes raw pixels (N, H, W, C) uint8 and does the layout change and /255 inside the graph.

    Why: the host then only decodes and resizes; the engine fuses the scale into its first layer, and
    the float conversion and transpose of every frame leave Python (model.input_format=uint8_nhwc).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2).to(torch.float32) / 255.0)  # as the host: a division (data.py)


def for_deployment(net: nn.Module, model_cfg) -> nn.Module:
    """The graph to export: the net, aligned (`model.align`), taking `model.input_format` inputs."""
    net = with_alignment(net, model_cfg.align)
    return UInt8NHWCInput(net).eval() if model_cfg.input_format == "uint8_nhwc" else net
