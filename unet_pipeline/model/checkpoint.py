"""milesial-format checkpoints: a state_dict with `mask_values`, read without running pickled code, loaded into
the configured UNet with a one-line error on any mismatch, and saved atomically (loadable by milesial's predict.py).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from unet_pipeline.core import PipelineError, write_atomic
from unet_pipeline.model.unet import UNet


def build_unet(model_cfg) -> UNet:
    """The architecture named by a `model` config (no weights)."""
    return UNet(
        n_channels=model_cfg.n_channels,
        n_classes=model_cfg.n_classes,
        bilinear=model_cfg.bilinear,
        base_width=model_cfg.base_width,
    )


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


MASK_VALUES = [0, 1]


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """torch.save, written atomically: a run killed mid-write leaves the previous checkpoint intact."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getvalue())


def save_milesial(weights: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> None:
    """A net's (or a state_dict's) weights + mask_values: loadable by the pipeline and by milesial's predict.py."""
    state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
    save_checkpoint({**{k: v.detach().clone() for k, v in state.items()}, "mask_values": MASK_VALUES}, path)
