"""The cell pass of full-resolution Dice, compiled (Numba): one sweep over the model's cells, no temporaries.

Why compiled: the same steps in NumPy and OpenCV take a dozen passes over model-size arrays and thirty small
ones over the mixed pixels, and cost as much as upsampling the whole frame (1.5-2 ms at 640x959). Here the
logits are read once, row by row: each model row's foreground-minus-background difference goes into a ring of
four rows (the most a cell's window spans), and each cell reads its window from there: a clearly positive cell
adds its frame pixels and the mask's block count, a cell <= 0 adds nothing, a mixed cell interpolates its frame
pixels one by one (fullres.py says why each step is exact). Compiled once per machine and cached beside this
module (or NUMBA_CACHE_DIR)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _difference_row(logits: np.ndarray, i: int, out: np.ndarray) -> bool:
    """out = logits[1, i] - logits[0, i] in float32 (as np.subtract(dtype=float32)); whether all are finite
    (exponent bits not all set: integer tests, so that it vectorizes)."""
    for c in range(out.shape[0]):
        out[c] = np.float32(logits[1, i, c]) - np.float32(logits[0, i, c])
    bits = out.view(np.int32)
    special = 0
    for c in range(out.shape[0]):
        special |= (bits[c] & 0x7F800000) == 0x7F800000
    return special == 0


@njit(cache=True, nogil=True)
def _fill_ring(logits: np.ndarray, ring: np.ndarray, computed: int, until: int) -> int:
    """Model rows computed+1..until into the ring; the last one computed, or -1 where one is not finite."""
    while computed < until:
        computed += 1
        if not _difference_row(logits, computed, ring[computed % 4]):
            return -1
    return computed


@njit(cache=True, nogil=True)
def _row_window(ring: np.ndarray, r: int, up: int, down: int, height: int, low: np.ndarray, high: np.ndarray) -> None:
    """low/high[c] = min/max over model rows r-up..r+down (clamped to the image) at column c, from the ring."""
    first = ring[min(max(r - up, 0), height - 1) % 4]
    low[:] = first
    high[:] = first
    for i in range(r - up + 1, r + down + 1):
        row = ring[min(max(i, 0), height - 1) % 4]
        for c in range(row.shape[0]):
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
def _usual_window(top: np.ndarray, bottom: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    """low/high[c] = min/max of cell c's four values, rows `top` and `bottom` (selects, not min(): so that it
    vectorizes)."""
    for c in range(low.shape[0]):
        a, b, e, f = top[c], top[c + 1], bottom[c], bottom[c + 1]
        ab, ef = (a if a < b else b), (e if e < f else f)
        low[c] = ab if ab < ef else ef
        ab, ef = (a if a > b else b), (e if e > f else f)
        high[c] = ab if ab > ef else ef


@njit(cache=True, nogil=True)
def _usual_row(
    logits: np.ndarray, r: int, top: np.ndarray, bottom: np.ndarray, floor: np.float32, counts, blocks, mixed
) -> tuple[int, int, int, bool]:
    """The usual window in one pass: `bottom` = model row r+1's differences, then row r's cells judged from
    `top` (row r) and `bottom`: (frame columns of the clearly positive cells, their mask block counts, mixed
    cells flagged 1 in `mixed` and counted, whether row r+1 has a NaN or infinite value). Vectorized."""
    width = bottom.shape[0]
    for c in range(width):
        bottom[c] = np.float32(logits[1, r + 1, c]) - np.float32(logits[0, r + 1, c])
    bits = bottom.view(np.int32)
    area, overlap, total, special = np.int32(0), np.int32(0), np.int32(0), np.int32(0)
    for c in range(width - 1):
        a, b, e, f = top[c], top[c + 1], bottom[c], bottom[c + 1]
        ab, ef = (a if a < b else b), (e if e < f else f)
        low = ab if ab < ef else ef
        ab, ef = (a if a > b else b), (e if e > f else f)
        high = ab if ab > ef else ef
        positive = np.int32(low > high * floor)
        area += positive * np.int32(counts[c])
        overlap += positive * np.int32(blocks[c])
        flag = np.int32(high > 0) - positive
        mixed[c] = flag
        total += flag
        special |= np.int32((bits[c] & 0x7F800000) == 0x7F800000)
    special |= np.int32((bits[width - 1] & 0x7F800000) == 0x7F800000)
    return area, overlap, total, special != 0


@njit(cache=True, nogil=True)
def _positive_cells(
    low: np.ndarray, high: np.ndarray, floor: np.float32, counts: np.ndarray, blocks: np.ndarray, mixed: np.ndarray
) -> tuple[int, int, int]:
    """Over one row of cells: (frame columns of the clearly positive cells (smallest value above `floor` times
    the largest), their mask block counts, how many cells are mixed, flagged 1 in `mixed`). 32-bit sums of 0/1
    products, so that it vectorizes."""
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
    logits: np.ndarray,
    rows: tuple,
    cols: tuple,
    window: np.ndarray,
    thresholds: np.ndarray,
    truth: tuple,
    labels: np.ndarray,
    unsure: np.ndarray,
) -> tuple[int, int, int]:
    """Sweep the cells of (2, h, w) logits; returns (|P|, |P ∩ T|, n unsure) over the pixels it decided, with
    n = -1 where a logit difference is NaN or infinite (nothing is decided then).

    rows, cols: (starts, counts, cell weight 0, cell weight 1) per axis (frame_grid.Axis). window: cells
    checked (up, down, left, right). thresholds: (clearly positive: smallest value above this share of the
    largest; coordinate slack; rounding margin). truth: (packed mask bits, block counts, frame width); for no
    mask, 0-size bits and zero counts. labels: the frame's label map to write (zeros), or 0-size. unsure:
    (n, 2) room for the frame pixels left to OpenCV (ys, xs); a count above n: they did not all fit."""
    floor = np.float32(thresholds[0])
    height, width = logits.shape[1], logits.shape[2]
    ring = np.empty((4, width), np.float32)  # model rows i at ring[i % 4]
    column_low, column_high = np.empty(width, np.float32), np.empty(width, np.float32)
    low, high, flags = np.empty(width - 1, np.float32), np.empty(width - 1, np.float32), np.empty(width - 1, np.uint8)
    counts = np.zeros(2, np.int64)  # |P|, |P ∩ T|
    found, computed = 0, -1  # the last model row in the ring
    usual = window[0] == 0 and window[1] == 1 and window[2] == 0 and window[3] == 1
    if usual and not _difference_row(logits, 0, ring[0]):
        return 0, 0, -1
    for r in range(height - 1):
        y0, ny = rows[0][r], rows[1][r]
        top, bottom = ring[r % 4], ring[(r + 1) % 4]
        if usual:  # one pass: row r+1's differences and row r's cells
            area, row_overlap, mixed, special = _usual_row(logits, r, top, bottom, floor, cols[1], truth[1][r], flags)
            if special:
                return 0, 0, -1
            if labels.size:
                _usual_window(top, bottom, low, high)
        else:
            computed = _fill_ring(logits, ring, computed, min(r + window[1], height - 1))
            if computed < 0:
                return 0, 0, -1
            _row_window(ring, r, window[0], window[1], height, column_low, column_high)
            _cell_window(column_low, window[2], window[3], low, True)
            _cell_window(column_high, window[2], window[3], high, False)
            area, row_overlap, mixed = _positive_cells(low, high, floor, cols[1], truth[1][r], flags)
        counts[0] += ny * area
        counts[1] += row_overlap
        if labels.size:
            _write_positive(labels, low, high, floor, y0, ny, cols)
        if mixed:
            row = (y0, ny, low, high, usual)
            found = _mixed_row(top, bottom, flags, row, rows, cols, thresholds, truth, labels, unsure, found, counts)
    return counts[0], counts[1], found


@njit(cache=True, nogil=True)
def _mixed_row(top, bottom, flags, row, rows, cols, thresholds, truth, labels, unsure, found, counts) -> int:
    """The mixed cells of one row (flagged in `flags`), 32 at a time skipped where none is: their margins from
    their window's spread (row: (y0, ny, low, high, usual); usual: the window is the four corners), then their
    frame pixels. Returns the new count of unsure pixels."""
    slack, rounding = thresholds[1], thresholds[2]
    y0, ny, low, high, usual = row
    for chunk in range(0, flags.shape[0], 32):
        end = min(chunk + 32, flags.shape[0])
        if flags[chunk:end].sum() == 0:
            continue
        for c in range(chunk, end):
            if flags[c] == 0:
                continue
            corners = (top[c], top[c + 1], bottom[c], bottom[c + 1])
            smallest, largest = (min(corners), max(corners)) if usual else (low[c], high[c])
            margin = 2 * slack * (largest - smallest) + rounding * max(-smallest, largest)
            cell = (y0, ny, cols[0][c], cols[1][c])
            found = _mixed_cell(corners, cell, rows, cols, margin, truth, labels, unsure, found, counts)
    return found


@njit(cache=True, nogil=True)
def _write_positive(labels, low, high, floor, y0, ny, cols) -> None:
    """Label the frame pixels of one row's clearly positive cells foreground."""
    for c in range(low.shape[0]):
        if low[c] > high[c] * floor:
            labels[y0 : y0 + ny, cols[0][c] : cols[0][c] + cols[1][c]] = 1


@njit(cache=True, nogil=True)
def _mixed_cell(corners, cell, rows, cols, margin, truth, labels, unsure, found, counts) -> int:
    """Interpolate the frame pixels of one mixed cell: count the clearly positive ones into `counts`
    (|P|, |P ∩ T|), label them in `labels` (when given), list those within `margin` of zero in `unsure`.
    Returns the new count of unsure pixels."""
    y0, ny, x0, nx = cell
    row_w0, row_w1 = rows[2], rows[3]
    col_w0, col_w1 = cols[2], cols[3]
    packed, frame_width = truth[0], truth[2]
    d00, d01, d10, d11 = corners
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
