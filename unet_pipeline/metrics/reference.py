"""milesial/Pytorch-UNet's conventions, re-implemented independently of the pipeline, to check it against.

Written from what milesial's code does, not copied from it:
- `BasicDataset.preprocess`: PIL opens the file; PIL resizes to `int(scale * w) x int(scale * h)`, BICUBIC for the
  photo and NEAREST for the mask; the photo goes HWC -> CHW and is divided by 255 (in float64, then `.float()`).
- `evaluate` + `multiclass_dice_coeff`: argmax over classes, one-hot, the background channel dropped; per image
  `(2 |P n T| + eps) / (|P| + |T| + eps)` with eps = 1e-6, where an empty P and T make the sums 2 |P n T| (so 1).

Used by tests/test_reference.py and benchmark/milesial_reference.py; nothing in the pipeline calls it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def milesial_photo(path, scale: float) -> np.ndarray:
    photo = Image.open(path)
    w, h = photo.size
    resized = np.asarray(photo.resize((int(scale * w), int(scale * h)), resample=Image.BICUBIC))
    return torch.as_tensor((resized.transpose((2, 0, 1)) / 255).copy()).float().numpy()


def milesial_mask(path, scale: float) -> np.ndarray:
    mask = Image.open(path)
    w, h = mask.size
    resized = np.asarray(mask.resize((int(scale * w), int(scale * h)), resample=Image.NEAREST))
    return (resized > 0).astype(np.int64)  # mask_values [0, 1] (or [0, 255]) -> class indices


def milesial_dice(logits: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> list[float]:
    """Per image, foreground class: what milesial's evaluate averages when batch_size=1."""
    classes = logits.shape[1]
    pred = torch.nn.functional.one_hot(logits.argmax(dim=1), classes).permute(0, 3, 1, 2).float()[:, 1:]
    true = torch.nn.functional.one_hot(mask, classes).permute(0, 3, 1, 2).float()[:, 1:]
    scores = []
    for p, t in zip(pred, true, strict=True):
        inter = torch.dot(p.reshape(-1), t.reshape(-1))
        sets = p.sum() + t.sum()
        if sets.item() == 0:
            sets = 2 * inter
        scores.append(float((2 * inter + eps) / (sets + eps)))
    return scores
