"""Where each source-frame pixel falls among the model's pixels, and the ground truth summed per model cell.

Why: upsampling the model's logits bilinearly to the frame makes every frame pixel a convex combination of the
four model values around it (a *cell*: rows r, r+1 and columns c, c+1). Where those four share a sign, the
pixel's label is known without upsampling; so full-resolution Dice needs, per cell, how many frame pixels it
covers and how many of them are foreground in the mask. Both are computed here once per frame size (the grid)
and once per mask (the block counts, kept by the input cache), so the Dice itself costs model-size work plus
the few frame pixels on the prediction's boundary (metrics/fullres.py).

Coordinates follow OpenCV's `resize(INTER_LINEAR)` (half-pixel centres, as torch's align_corners=False):
source = (dst + 0.5) * src/dst - 0.5, clamped to the image at its borders."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np

# OpenCV (through Intel IPP) computes a frame pixel's source coordinate in float32: it may differ from the exact
# one by about half a float32 step at the image's width (1.5e-5 measured at 479 columns). This is the bound
# assumed, with room: a frame pixel closer than this to a model column or row may be interpolated from the
# cell beside its own, so such an axis is checked over a wider window of cells.
COORDINATE_SLACK = 1e-4


@dataclass(frozen=True)
class Axis:
    """One axis of the upsampling, src model pixels -> dst frame pixels."""

    src: int
    dst: int
    cell: np.ndarray  # (dst,) the cell (tap pair c, c+1, c <= src-2) each frame pixel lies in
    starts: np.ndarray  # (src-1,) first frame pixel of each cell
    counts: np.ndarray  # (src-1,) frame pixels in each cell (0 where downsampling skips one)
    tap0: np.ndarray  # (dst,) OpenCV's first tap (the model pixel at or before the frame pixel, clamped)
    cell_weight0: np.ndarray  # (dst,) float32 weights of the pixel's cell's two model pixels (a border pixel
    cell_weight1: np.ndarray  # clamped to the last model pixel weighs it 1)
    wide: bool  # some frame pixel lies within COORDINATE_SLACK of a model pixel: check cells c-1..c+2

    @classmethod
    def of(cls, src: int, dst: int) -> Axis:
        coordinate = (np.arange(dst) + 0.5) * (1.0 / (dst / src)) - 0.5  # as OpenCV: scale = 1 / (dst / src)
        floor = np.floor(coordinate)
        cell = np.clip(floor, 0, src - 2).astype(np.int64)
        starts = np.searchsorted(cell, np.arange(src - 1))
        fraction = (coordinate - floor).astype(np.float32)
        tap0 = floor.astype(np.int64)
        clamped = (tap0 < 0) | (tap0 >= src - 1)
        tap0 = np.clip(tap0, 0, src - 1)
        fraction[clamped] = 0
        near = np.minimum(fraction, 1 - fraction)[~clamped]
        weight0 = (np.float32(1) - fraction).astype(np.float32)
        past = tap0 > cell  # clamped to the last model pixel: the second of its cell
        return cls(
            src=src,
            dst=dst,
            cell=cell,
            starts=starts,
            counts=np.diff(np.append(starts, dst)),
            tap0=tap0,
            cell_weight0=np.where(past, np.float32(0), weight0),
            cell_weight1=np.where(past, np.float32(1), fraction),
            wide=bool(near.size and near.min() < COORDINATE_SLACK),
        )

    @property
    def window(self) -> tuple[int, int]:
        """(cells' taps checked before, after): c..c+1, or c-1..c+2 on a wide axis."""
        return (1, 2) if self.wide else (0, 1)


@dataclass(frozen=True, eq=False)
class FrameGrid:
    """The model's (h, w) pixels over a (height, width) frame: its cells, their frame pixels and areas."""

    rows: Axis
    cols: Axis
    areas: np.ndarray  # (h-1, w-1) frame pixels per cell
    band: int  # frame rows per model row when that is a power of two (rows can be redone exactly), else 0

    @property
    def model_hw(self) -> tuple[int, int]:
        return self.rows.src, self.cols.src

    @property
    def frame_hw(self) -> tuple[int, int]:
        return self.rows.dst, self.cols.dst

    @cached_property
    def kernel_arguments(self) -> tuple[tuple, tuple, np.ndarray]:
        """(rows, cols, window) as cells.cell_pass takes them."""
        rows, cols = self.rows, self.cols
        return (
            (rows.starts, rows.counts, rows.cell_weight0, rows.cell_weight1),
            (cols.starts, cols.counts, cols.cell_weight0, cols.cell_weight1),
            np.array([*rows.window, *cols.window]),
        )

    @property
    def supported(self) -> bool:
        """Upsampling of at least 2x2 model pixels: where the cell argument holds (else Dice upsamples it all)."""
        rows, cols = self.rows, self.cols
        return rows.src >= 2 and cols.src >= 2 and rows.dst >= rows.src and cols.dst >= cols.src

    def block_counts(self, mask: np.ndarray) -> np.ndarray:
        """(h-1, w-1) foreground pixels of a {0,1} (height, width) mask within each cell (summed-area table)."""
        table = cv2.integral(np.ascontiguousarray(mask, np.uint8), sdepth=cv2.CV_32S)
        corners = table[np.append(self.rows.starts, self.rows.dst)][:, np.append(self.cols.starts, self.cols.dst)]
        counts = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
        return np.ascontiguousarray(counts, self.areas.dtype)  # C order: OpenCV would copy another


@lru_cache(maxsize=16)
def frame_grid(model_hw: tuple[int, int], frame_hw: tuple[int, int]) -> FrameGrid:
    """The grid of a model size over a frame size (computed once per pair)."""
    rows, cols = Axis.of(model_hw[0], frame_hw[0]), Axis.of(model_hw[1], frame_hw[1])
    areas = np.outer(rows.counts, cols.counts)
    dtype = np.uint8 if areas.size and areas.max() <= np.iinfo(np.uint8).max else np.uint16
    factor = frame_hw[0] // model_hw[0]
    exact_band = frame_hw[0] == factor * model_hw[0] and factor & (factor - 1) == 0
    return FrameGrid(rows, cols, areas.astype(dtype), factor if exact_band else 0)


@dataclass(frozen=True)
class BlockCounts:
    """The mask summary the input cache keeps beside each source-size mask (data.MaskSummary): its
    foreground pixels per cell of this model size, so that a warm job computes no summed-area table."""

    model_hw: tuple[int, int]
    key: str = "cells"

    def layout(self, frame_hw: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype]:
        grid = frame_grid(tuple(self.model_hw), tuple(frame_hw))
        return (grid.areas.shape, grid.areas.dtype) if grid.supported else ((0, 0), np.dtype(np.uint8))

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        grid = frame_grid(tuple(self.model_hw), mask.shape)
        return grid.block_counts(mask) if grid.supported else np.zeros((0, 0), np.uint8)


@dataclass(frozen=True)
class FullTruth:
    """A ground-truth mask at its frame size, kept as full-resolution Dice reads it: bit-packed (0.3 MB at
    1918x1280, against 2.4 MB unpacked), its foreground count, and its counts per cell of one model size."""

    packed: np.ndarray  # np.packbits of the row-major {0,1} mask
    shape: tuple[int, int]  # (height, width) of the frame
    pixels: int  # foreground pixels: Dice's |T|
    blocks: np.ndarray  # FrameGrid.block_counts of the mask, for the model size it was made for

    @classmethod
    def of(cls, mask: np.ndarray, model_hw: tuple[int, int]) -> FullTruth:
        mask = np.ascontiguousarray(mask, np.uint8)
        return cls(np.packbits(mask), mask.shape, int(np.count_nonzero(mask)), BlockCounts(tuple(model_hw))(mask))

    def unpacked(self) -> np.ndarray:
        return np.unpackbits(self.packed, count=self.shape[0] * self.shape[1]).reshape(self.shape)
