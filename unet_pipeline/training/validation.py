"""Validation Dice: what picks a training run's best epoch, and what `python -m unet_pipeline.validate` reports
for any weights on the same training-validation cars.

Why: runs are compared (and a bundled model picked) on cars that neither trained them nor are evaluated by the
pipeline; this scores weights from elsewhere (a soup, another run, a bundled file) the same way, without
training.
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from unet_pipeline.core import PipelineError, file_sha256
from unet_pipeline.data import Preprocessing, ensure_configured, input_hw, list_samples, to_model_input
from unet_pipeline.metrics import dice_of_logits
from unet_pipeline.model import load_unet
from unet_pipeline.training.batches import load_arrays, train_val_samples


@torch.no_grad()
def validation_scores(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray, batch: int) -> np.ndarray:
    """Per-image Dice, computed as the pipeline computes it (the net is left in training mode)."""
    net.eval()
    scores = []
    for i in range(0, len(images), batch):
        x = np.stack([to_model_input(p) for p in images[i : i + batch]])
        logits = net(torch.from_numpy(x)).float().numpy()
        scores.append(dice_of_logits(logits, masks[i : i + batch]))
    net.train()
    return np.concatenate(scores)


def mean_validation_dice(net: torch.nn.Module, images: np.ndarray, masks: np.ndarray, batch: int) -> float:
    """Mean per-image Dice: what picks the epoch."""
    return float(validation_scores(net, images, masks, batch).mean())


def validation_dice(cfg: DictConfig) -> dict:
    """Per-image and mean Dice of `model.checkpoint` on the validation cars of `train`'s split."""
    checkpoint = cfg.model.checkpoint
    if not checkpoint or checkpoint == "random":
        raise PipelineError("model.checkpoint=<path to a .pth>: the weights to validate")
    net = load_unet(cfg.model, checkpoint)[0]  # fails in one line before minutes of decoding
    hw = input_hw(cfg.model, cfg.data)
    ensure_configured(cfg.data)
    _, val_set = train_val_samples(list_samples(cfg.data.root, cfg.data), cfg)
    if not val_set:
        raise PipelineError("train.val_fraction=0 leaves no validation cars; use the fraction the weights' run used")
    images, masks = load_arrays(val_set, hw, Preprocessing.of(cfg.model, cfg.data), cfg.train.progress, "loading val")
    per_image = validation_scores(net, images, masks, cfg.train.batch_size)
    return {
        "checkpoint": str(checkpoint),
        "sha256": file_sha256(checkpoint),
        "val_dice": float(per_image.mean()),
        "val_images": len(val_set),
        "val_cars": sorted({s.car for s in val_set}),
        "per_image": {s.id: float(d) for s, d in zip(val_set, per_image, strict=True)},
    }
