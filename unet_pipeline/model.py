"""milesial/Pytorch-UNet architecture and milesial-format checkpoint loading.

Module and parameter names match milesial's `unet/unet_parts.py` exactly, so its released checkpoints
(`unet_carvana_scale0.5_epoch2.pth`) load unchanged and ours load in its code. `base_width` generalises
the hard-coded 64 for compact variants.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PipelineError


class DoubleConv(nn.Module):
    """(conv 3x3 -> BN -> ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None):
        super().__init__()
        mid_channels = mid_channels or out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class Down(nn.Module):
    """Max-pool 2x then DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    """Upsample 2x, pad to the skip tensor's size (odd widths such as 959), concatenate, DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True):
        super().__init__()
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        diff_y = x2.size()[2] - x1.size()[2]
        diff_x = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diff_x // 2, diff_x - diff_x // 2, diff_y // 2, diff_y - diff_y // 2])
        return self.conv(torch.cat([x2, x1], dim=1))


class OutConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNet(nn.Module):
    """milesial's UNet; `base_width=64` is the released architecture. Input RGB in [0, 1], NCHW."""

    def __init__(self, n_channels: int = 3, n_classes: int = 2, bilinear: bool = False, base_width: int = 64):
        super().__init__()
        self.n_channels, self.n_classes, self.bilinear = n_channels, n_classes, bilinear
        w = base_width
        factor = 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, w)
        self.down1 = Down(w, w * 2)
        self.down2 = Down(w * 2, w * 4)
        self.down3 = Down(w * 4, w * 8)
        self.down4 = Down(w * 8, w * 16 // factor)
        self.up1 = Up(w * 16, w * 8 // factor, bilinear)
        self.up2 = Up(w * 8, w * 4 // factor, bilinear)
        self.up3 = Up(w * 4, w * 2 // factor, bilinear)
        self.up4 = Up(w * 2, w, bilinear)
        self.outc = OutConv(w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)


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


def build_unet(model_cfg) -> UNet:
    """The architecture named by a `model` config (no weights)."""
    return UNet(
        n_channels=model_cfg.n_channels,
        n_classes=model_cfg.n_classes,
        bilinear=model_cfg.bilinear,
        base_width=model_cfg.base_width,
    )


def file_sha256(path: str | Path) -> str:
    """Content hash: identifies the weights in result.json (and, later, in artifact cache keys)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], list]:
    """Read a milesial-format checkpoint: a state_dict, optionally with a `mask_values` entry.

    `weights_only=True` refuses pickles that would run code on load.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"checkpoint not found: {path} (set model.checkpoint=<path to a .pth state_dict>)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs_code = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if needs_code:
            raise PipelineError(
                f"checkpoint {path} needs code execution to load ({needs_code.group(1)}) and was refused "
                "(weights_only); re-save it as a plain state_dict: torch.save(model.state_dict(), path)"
            ) from exc
        raise PipelineError(f"checkpoint {path} is not a readable PyTorch file; pass a milesial-format .pth") from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/... for files that are no checkpoint
        raise PipelineError(
            f"checkpoint {path} is not a readable PyTorch file ({type(exc).__name__}); "
            "pass a milesial-format .pth (a state_dict)"
        ) from exc
    if not isinstance(state, dict):
        raise PipelineError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    state = dict(state)
    mask_values = state.pop("mask_values", [0, 1])
    return state, list(mask_values)


def load_unet(model_cfg, path: str | Path) -> tuple[UNet, list]:
    """Build the configured UNet and load `path` into it, failing in one line on any mismatch."""
    state, mask_values = read_checkpoint(path)
    net = build_unet(model_cfg)
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise PipelineError(
            f"checkpoint {path} does not match model={model_cfg.name} "
            f"(bilinear={model_cfg.bilinear}): {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); pick the model config it was trained with"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise PipelineError(
                f"checkpoint {path} does not match model={model_cfg.name}: {key} has shape "
                f"{tuple(state[key].shape)}, the model expects {tuple(tensor.shape)} "
                f"(check model.base_width={model_cfg.base_width} and model.n_classes={model_cfg.n_classes})"
            )
    net.load_state_dict(state)
    return net.eval(), mask_values


def input_hw(model_cfg, data_cfg) -> tuple[int, int]:
    """Model input (height, width): the frame scaled as milesial does, int(scale * size)."""
    return int(model_cfg.scale * data_cfg.frame_height), int(model_cfg.scale * data_cfg.frame_width)
