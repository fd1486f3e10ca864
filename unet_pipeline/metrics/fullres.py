"""Full-resolution Dice at model-size cost, with the label map of `upsampled_labels`, bit for bit.

Why: upsampling a 2-class prediction to a 1918x1280 frame before comparing it with the mask cost 1-5 ms per
image on the host, as much as a fifth of the engine's time per image at 320x479. Bilinear upsampling is
linear, so each frame pixel's foreground-minus-background logit is a convex combination of the four model
values of its cell (frame_grid.py). Three kinds of cell (the pass over them: cells.py):
- all values of the cell's window clearly positive (the smallest above 2^-16 of the largest, so that no order
  of float32 operations can round the combination to zero), or all <= 0: every frame pixel of the cell has
  that label, counted by area and by the mask's block counts;
- mixed: its frame pixels are interpolated one by one, and labelled where the value is farther from zero than
  OpenCV's arithmetic could move it (coordinate errors up to COORDINATE_SLACK times the window's spread, plus
  float32 rounding);
- the few left (a value within that margin of zero): OpenCV's own resize of the frame rows around them decides
  (the same arithmetic where the row factor is a power of two), else of the whole frame.
Anything else (more than two classes, non-finite logits, downsampling, a model side of one pixel) upsamples
the whole frame as `upsampled_labels` does."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from unet_pipeline.metrics.cells import cell_pass
from unet_pipeline.metrics.dice import EPS, upsampled_labels
from unet_pipeline.metrics.frame_grid import COORDINATE_SLACK, FrameGrid, FullTruth, frame_grid

RELATIVE_FLOOR = 2.0**-16  # a cell is clearly positive when its smallest value is above this share of its largest
ROUNDING_MARGIN = 2.0**-18  # of the window's largest |value|: a few float32 roundings, sixteen times over
UNSURE_ROOM = 4096  # frame pixels left to OpenCV that one image may have before it upsamples them all
_THRESHOLDS = np.array([RELATIVE_FLOOR, COORDINATE_SLACK, ROUNDING_MARGIN])
_scratch = threading.local()  # per thread: the list of unsure pixels, reused


def _sweep(logits: np.ndarray, grid: FrameGrid, truth: tuple, labels: np.ndarray) -> tuple[int, int] | None:
    """(|P|, |P ∩ T|) of one image (labels written where `labels` is a frame), or None: upsample it all."""
    unsure = getattr(_scratch, "unsure", None)
    if unsure is None:
        unsure = _scratch.unsure = np.empty((UNSURE_ROOM, 2), np.int64)
    logits = np.ascontiguousarray(logits, np.float32)  # as upsampled_labels subtracts them
    rows, cols, window = grid.kernel_arguments
    foreground, overlap, found = cell_pass(logits, rows, cols, window, _THRESHOLDS, truth, labels, unsure)
    if found < 0 or found > UNSURE_ROOM:  # a logit NaN or infinite, or too many pixels near zero
        return None
    if not found:
        return foreground, overlap
    ys, xs = unsure[:found, 0], unsure[:found, 1]
    decided = (_resized_values(logits, grid, ys, xs) > 0).view(np.uint8)
    if labels.size:
        labels[ys, xs] = decided
    mixed_overlap = np.count_nonzero(decided & _bits(truth, ys, xs)) if truth[0].size else 0
    return foreground + int(np.count_nonzero(decided)), overlap + int(mixed_overlap)


def _bits(truth: tuple, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    index = ys * truth[2] + xs
    return (truth[0][index >> 3] >> (7 - (index & 7)).astype(np.uint8)) & 1


def _difference(logits: np.ndarray, first: int = 0, last: int | None = None) -> np.ndarray:
    """Model rows first..last of logits[1] - logits[0], as `upsampled_labels` computes it."""
    return np.subtract(logits[1, first:last], logits[0, first:last], dtype=np.float32)


def _resized_values(logits: np.ndarray, grid: FrameGrid, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """OpenCV's upsampled values at frame pixels (ys, xs): from the frame rows of the few model rows around
    each (same arithmetic where the row factor is a power of two), else from the whole frame."""
    height, width = grid.frame_hw
    if not grid.band:
        return cv2.resize(_difference(logits), (width, height), interpolation=cv2.INTER_LINEAR)[ys, xs]
    values = np.empty(len(ys), np.float32)
    taps = grid.rows.tap0[ys]
    for tap in sorted(set(taps.tolist())):  # not np.unique: ~0.5 ms a call here, beside large arrays
        first, last = max(tap - 1, 0), min(tap + 3, grid.rows.src)
        band = _difference(logits, first, last)
        rows = cv2.resize(band, (width, (last - first) * grid.band), interpolation=cv2.INTER_LINEAR)
        here = taps == tap
        values[here] = rows[ys[here] - first * grid.band, xs[here]]
    return values


def dice_of_counts(foreground: int, overlap: int, truth_pixels: int) -> float:
    """Dice as `dice_full` writes it: (2|P∩T| + eps) / (|P| + |T| + eps), an empty pair scoring 1."""
    inter = 2.0 * overlap
    sets = float(foreground + truth_pixels)
    return (inter + EPS) / ((sets if sets else inter) + EPS)


def _usable_grid(logits: np.ndarray, frame_hw: tuple[int, int]) -> FrameGrid | None:
    if logits.shape[0] != 2:
        return None
    grid = frame_grid(tuple(logits.shape[1:]), tuple(frame_hw))
    return grid if grid.supported else None


def dice_full_exact(logits: np.ndarray, truths: list[FullTruth]) -> np.ndarray:
    """Per-image Dice of (N, C, h, w) logits upsampled to each mask's frame: equal to `dice_full` on the
    unpacked masks, at a fraction of its cost (the module's docstring)."""
    scores = []
    for one, truth in zip(logits, truths, strict=True):
        grid = _usable_grid(one, truth.shape)
        counts = None
        if grid is not None and truth.blocks.shape == grid.areas.shape:
            no_labels = np.zeros((0, 0), np.uint8)
            counts = _sweep(one, grid, (truth.packed, truth.blocks, truth.shape[1]), no_labels)
        if counts is None:
            pred = upsampled_labels(one, *truth.shape)
            counts = (int(np.count_nonzero(pred)), int(np.count_nonzero(pred & truth.unpacked())))
        scores.append(dice_of_counts(*counts, truth.pixels))
    return np.asarray(scores, np.float64)


def fast_upsampled_labels(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """`upsampled_labels(logits, height, width)`, the same bits, from the cells (writing a mask to disk)."""
    grid = _usable_grid(logits, (height, width))
    if grid is not None:
        labels = np.zeros((height, width), np.uint8)
        no_mask = (np.zeros(0, np.uint8), np.zeros_like(grid.areas), 0)
        if _sweep(logits, grid, no_mask, labels) is not None:
            return labels
    return upsampled_labels(logits, height, width)


def warm_up() -> None:
    """Compile (or load from Numba's cache) the cell pass for both block-count types and the label writer,
    so that a timed loop's first image does not pay for it (seconds the first time on a machine)."""
    rng = np.random.default_rng(0)
    for model_hw, frame_hw in (((4, 6), (8, 12)), ((2, 2), (40, 40))):  # uint8, then uint16 block counts
        logits = rng.normal(size=(1, 2, *model_hw)).astype(np.float32)
        dice_full_exact(logits, [FullTruth.of(np.ones(frame_hw, np.uint8), model_hw)])
        fast_upsampled_labels(logits[0], *frame_hw)
