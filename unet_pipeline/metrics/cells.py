"""The cell pass of full-resolution Dice, compiled (Numba): one sweep over the model's cells, no temporaries.

Why compiled: the same steps in NumPy and OpenCV take a dozen passes over model-size arrays and thirty small
ones over the mixed pixels, and cost as much as upsampling the whole frame (1.5-2 ms at 640x959). Here each
cell reads its window of logit differences once: a clearly positive cell adds its frame pixels and the mask's
block count, a cell <= 0 adds nothing, a mixed cell interpolates its frame pixels one by one (fullres.py says
why each step is exact). Compiled once per machine and cached beside this module (or NUMBA_CACHE_DIR)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _row_window(d: np.ndarray, r: int, up: int, down: int, low: np.ndarray, high: np.ndarray) -> None:
    """low/high[c] = min/max of d over rows r-up..r+down (clamped) at column c."""
    last = d.shape[0] - 1
    if up == 0 and down == 1:  # the usual window, without clamping: vectorized
        top, bottom = d[r], d[r + 1]
        for c in range(d.shape[1]):
            low[c], high[c] = min(top[c], bottom[c]), max(top[c], bottom[c])
        return
    low[:] = d[min(max(r - up, 0), last)]
    high[:] = low
    for i in range(r - up + 1, r + down + 1):
        row = d[min(max(i, 0), last)]
        for c in range(d.shape[1]):
            low[c] = min(low[c], row[c])
            high[c] = max(high[c], row[c])


@njit(cache=True, nogil=True)
def _cell_window(column: np.ndarray, left: int, right: int, out: np.ndarray, smallest: bool) -> None:
    """out[c] = min (or max) of column[c-left .. c+right] (clamped), for the w-1 cells of a row."""
    cells, last = out.shape[0], column.shape[0] - 1
    if left == 0 and right == 1:  # the usual window, without clamping: vectorized
        for c in range(cells):
            out[c] = min(column[c], column[c + 1]) if smallest else max(column[c], column[c + 1])
        return
    for c in range(cells):
        out[c] = column[min(max(c - left, 0), last)]
    for k in range(-left + 1, right + 1):
        if smallest:
            for c in range(cells):
                out[c] = min(out[c], column[min(max(c + k, 0), last)])
        else:
            for c in range(cells):
                out[c] = max(out[c], column[min(max(c + k, 0), last)])


@njit(cache=True, nogil=True)
def _usual_window(d: np.ndarray, r: int, low: np.ndarray, high: np.ndarray) -> None:
    """low/high[c] = min/max of cell (r, c)'s four values (selects, not min(): so that it vectorizes)."""
    top, bottom = d[r], d[r + 1]
    for c in range(low.shape[0]):
        a, b, e, f = top[c], top[c + 1], bottom[c], bottom[c + 1]
        ab, ef = (a if a < b else b), (e if e < f else f)
        low[c] = ab if ab < ef else ef
        ab, ef = (a if a > b else b), (e if e > f else f)
        high[c] = ab if ab > ef else ef


@njit(cache=True, nogil=True)
def _positive_cells(
    low: np.ndarray, high: np.ndarray, floor: np.float32, counts: np.ndarray, blocks: np.ndarray, mixed: np.ndarray
) -> tuple[int, int, int]:
    """Over one row of cells: (frame columns of the clearly positive cells (smallest value above `floor`
    times the largest), their mask block counts, how many
    cells are mixed, flagged 1 in `mixed`). 32-bit sums of 0/1 products, so that it vectorizes."""
    area = np.int32(0)
    overlap = np.int32(0)
    total = np.int32(0)
    for c in range(low.shape[0]):
        positive = np.int32(low[c] > high[c] * floor)
        area += positive * np.int32(counts[c])
        overlap += positive * np.int32(blocks[c])
        flag = np.int32(high[c] > 0) - positive
        mixed[c] = flag
        total += flag
    return area, overlap, total


@njit(cache=True, nogil=True, inline="always")
def _truth_at(packed: np.ndarray, index: int) -> int:
    return (packed[index >> 3] >> (7 - (index & 7))) & 1


@njit(cache=True, nogil=True)
def cell_pass(
    d: np.ndarray,
    rows: tuple,
    cols: tuple,
    window: np.ndarray,
    thresholds: np.ndarray,
    truth: tuple,
    labels: np.ndarray,
    unsure: np.ndarray,
) -> tuple[int, int, int]:
    """Sweep the cells of difference map `d`; returns (|P|, |P ∩ T|, n unsure) over the pixels it decided.

    rows, cols: (starts, counts, cell weight 0, cell weight 1) per axis (frame_grid.Axis). window: cells
    checked (up, down, left, right). thresholds: (clearly positive: smallest value above this share of the
    largest; coordinate slack; rounding margin). truth: (packed mask bits, block counts, frame width); for no
    mask, 0-size bits and zero counts. labels: the frame's label map to write (zeros), or 0-size. unsure:
    (n, 2) room for the frame pixels left to OpenCV (ys, xs); a count above n: they did not all fit."""
    floor, slack, rounding = np.float32(thresholds[0]), thresholds[1], thresholds[2]
    width = d.shape[1]
    column_low, column_high = np.empty(width, d.dtype), np.empty(width, d.dtype)
    low, high, flags = np.empty(width - 1, d.dtype), np.empty(width - 1, d.dtype), np.empty(width - 1, np.uint8)
    counts = np.zeros(2, np.int64)  # |P|, |P ∩ T|
    found = 0
    usual = window[0] == 0 and window[1] == 1 and window[2] == 0 and window[3] == 1
    for r in range(d.shape[0] - 1):
        y0, ny = rows[0][r], rows[1][r]
        if ny == 0:
            continue
        if usual:
            _usual_window(d, r, low, high)
        else:
            _row_window(d, r, window[0], window[1], column_low, column_high)
            _cell_window(column_low, window[2], window[3], low, True)
            _cell_window(column_high, window[2], window[3], high, False)
        area, row_overlap, mixed = _positive_cells(low, high, floor, cols[1], truth[1][r], flags)
        counts[0] += ny * area
        counts[1] += row_overlap
        if labels.size:
            _write_positive(labels, low, high, floor, y0, ny, cols)
        for chunk in range(0, width - 1 if mixed else 0, 32):  # mixed cells are few: skip 32 at a time
            end = min(chunk + 32, width - 1)
            if flags[chunk:end].sum() == 0:
                continue
            for c in range(chunk, end):
                if flags[c] == 0 or cols[1][c] == 0:
                    continue
                margin = 2 * slack * (high[c] - low[c]) + rounding * max(-low[c], high[c])
                cell = (r, c, y0, ny, cols[0][c], cols[1][c])
                found = _mixed_cell(d, cell, rows, cols, margin, truth, labels, unsure, found, counts)
    return counts[0], counts[1], found


@njit(cache=True, nogil=True)
def _write_positive(labels, low, high, floor, y0, ny, cols) -> None:
    """Label the frame pixels of one row's clearly positive cells foreground."""
    for c in range(low.shape[0]):
        if low[c] > high[c] * floor:
            labels[y0 : y0 + ny, cols[0][c] : cols[0][c] + cols[1][c]] = 1


@njit(cache=True, nogil=True)
def _mixed_cell(d, cell, rows, cols, margin, truth, labels, unsure, found, counts) -> int:
    """Interpolate the frame pixels of one mixed cell: count the clearly positive ones into `counts`
    (|P|, |P ∩ T|), label them in `labels` (when given), list those within `margin` of zero in `unsure`.
    Returns the new count of unsure pixels."""
    r, c, y0, ny, x0, nx = cell
    row_w0, row_w1 = rows[2], rows[3]
    col_w0, col_w1 = cols[2], cols[3]
    packed, frame_width = truth[0], truth[2]
    d00, d01, d10, d11 = d[r, c], d[r, c + 1], d[r + 1, c], d[r + 1, c + 1]
    for y in range(y0, y0 + ny):
        for x in range(x0, x0 + nx):
            top = d00 * col_w0[x] + d01 * col_w1[x]
            bottom = d10 * col_w0[x] + d11 * col_w1[x]
            value = top * row_w0[y] + bottom * row_w1[y]
            if abs(value) <= margin:  # too near zero to call: OpenCV's own value decides
                if found < unsure.shape[0]:
                    unsure[found, 0], unsure[found, 1] = y, x
                found += 1
            elif value > 0:
                counts[0] += 1
                if packed.size:
                    counts[1] += _truth_at(packed, y * frame_width + x)
                if labels.size:
                    labels[y, x] = 1
    return found
