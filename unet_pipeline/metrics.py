"""Dice exactly as the MagicMind sample (and milesial's evaluate.py) computes it.

Per image, at model resolution, foreground class after argmax over the class axis:
dice = (2|P∩T| + eps) / (|P| + |T| + eps), eps = 1e-6, with an empty prediction of an empty mask
scoring 1; the job's Dice is the mean over images.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def predict_labels(logits: np.ndarray) -> np.ndarray:
    """Class index per pixel from (N, C, H, W) logits; for 2 classes a comparison, not a full argmax."""
    if logits.shape[1] == 2:
        return (logits[:, 1] > logits[:, 0]).astype(np.uint8)
    return logits.argmax(axis=1).astype(np.uint8)


def dice_per_image(pred: np.ndarray, true: np.ndarray, foreground: int = 1) -> np.ndarray:
    """Dice of the foreground class for each image of a (N, H, W) batch of label maps."""
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} != mask shape {true.shape}")
    p = (pred == foreground).reshape(len(pred), -1)
    t = (true == foreground).reshape(len(true), -1)
    inter = 2.0 * np.count_nonzero(p & t, axis=1)
    sets = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1).astype(np.float64)
    sets = np.where(sets == 0, inter, sets)
    return (inter + EPS) / (sets + EPS)


def dice_of_batch(logits: np.ndarray, masks: np.ndarray, mask_pixels: np.ndarray) -> np.ndarray:
    """`dice_per_image(predict_labels(logits), masks)` for the inference loop, about 4x cheaper.

    Why: it runs between engine calls, so its cost is lost throughput. `masks` is bool and `mask_pixels` its
    foreground count per image, both made by the worker that read the masks; no label map is materialized.
    """
    if logits.shape[1] != 2:
        return dice_per_image(predict_labels(logits), masks.astype(np.uint8))
    pred = np.greater(logits[:, 1], logits[:, 0])
    both = np.logical_and(pred, masks)
    inter = 2.0 * np.array([np.count_nonzero(b) for b in both], np.float64)
    sets = np.array([np.count_nonzero(p) for p in pred], np.float64) + mask_pixels
    sets = np.where(sets == 0, inter, sets)
    return (inter + EPS) / (sets + EPS)
