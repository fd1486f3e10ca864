"""Masks as run-length codes, the Carvana competition's submission format (`img,rle_mask`).

Pixels are numbered from 1 over the row-major frame; a code is space-separated start/length pairs of the runs of
foreground. Encoding is exact and lossless: `rle_decode(rle_encode(mask), mask.shape)` is the mask.
"""

from __future__ import annotations

import numpy as np

HEADER = "img,rle_mask"


def rle_encode(mask: np.ndarray) -> str:
    """'start length start length ...' of the foreground (non-zero) runs of a 2-D mask, 1-indexed, row-major."""
    flat = np.concatenate([[0], (mask.ravel() > 0).view(np.uint8), [0]])
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-indexed starts and ends (exclusive) of every run
    edges[1::2] -= edges[::2]
    return " ".join(map(str, edges))


def rle_decode(code: str, shape: tuple[int, int]) -> np.ndarray:
    """The {0, 1} uint8 mask of `shape` a run-length code describes."""
    flat = np.zeros(shape[0] * shape[1], np.uint8)
    numbers = np.array(code.split(), np.int64)
    for start, length in zip(numbers[::2] - 1, numbers[1::2], strict=True):
        flat[start : start + length] = 1
    return flat.reshape(shape)
