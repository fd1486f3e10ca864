"""Preprocessed evaluation inputs, decoded once and shared by every job that needs the same ones.

Why: in a sweep of precisions x batches every job decodes and resizes the same images; on a CPU that
already gives both cores to the engine, that host work is what keeps end-to-end below engine-only speed.
An entry holds the resized RGB pixels (uint8 HxWx3), the mask at model resolution, the mask at the
source frame size (bit-packed: 0.3 MB at 1918x1280) and a summary of it that full-resolution Dice reads (its
foreground pixels per model cell: `MaskSummary`, given by the caller) for one image, keyed by the content of
the image and mask files, the model size, the preprocessing and the summary, so an edited image is another
entry. Writes are atomic; an entry that cannot be read or fails its checksum is recomputed, never trusted.

Why this format and not .npz: a warm entry is read straight into the feed's reused batch buffers (one
`preadv` into pixels and masks, then an xxh3 checksum at tens of GB/s). Loading an .npz allocated fresh
arrays every time (page faults: several ms per 640x959 image on a VM) and verified a CRC at 4 GB/s;
that host work, on the cores the engine runs on, was most of what end to end lost warm. The source-size
mask is in the entry for the same reason: decoding its GIF again costs ~10-20 ms a frame; and its summary, as
a summed-area table of it costs 1-3 ms."""

from __future__ import annotations

import logging
import os
import struct
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import xxhash

from unet_pipeline.core import array_checksum
from unet_pipeline.data.preprocessing import Preprocessing, load_pair_full
from unet_pipeline.data.samples import Sample

log = logging.getLogger(__name__)

# 5: the mask summary and foreground count; 4: the source-size mask in the entry; 3: centre-aligned masks.
PREPROCESS_VERSION = 5  # bump when decoding, resizing or the entry layout changes what an entry holds
MAGIC = b"UNETINP\x05"
# magic, model height, width, source height, width, foreground pixels of the source-size mask, xxh3-64 of the
# pixel then model-mask bytes, of the packed mask then its summary
HEADER = struct.Struct("<8sIIIIQQQ")


class MaskSummary(Protocol):
    """Something computed once from a source-size {0,1} mask and kept beside it (metrics.BlockCounts)."""

    key: str  # part of the entry's key: entries with another summary are other entries

    def layout(self, frame_hw: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype]: ...

    def __call__(self, mask: np.ndarray) -> np.ndarray: ...


class _NoSummary:
    key = "none"

    def layout(self, frame_hw: tuple[int, int]) -> tuple[tuple[int, ...], np.dtype]:
        return (0,), np.dtype(np.uint8)

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        return np.zeros(0, np.uint8)


@dataclass(frozen=True)
class SourceMask:
    """The ground-truth mask at its source frame size, as the entry keeps it."""

    packed: np.ndarray  # np.packbits of the row-major {0,1} mask
    shape: tuple[int, int]  # (height, width)
    pixels: int  # foreground pixels
    summary: np.ndarray  # the cache's MaskSummary of it

    @classmethod
    def of(cls, mask: np.ndarray, summary: MaskSummary) -> SourceMask:
        mask = np.ascontiguousarray(mask, np.uint8)
        return cls(np.packbits(mask), mask.shape, int(np.count_nonzero(mask)), summary(mask))


def _digest(path: Path) -> str:
    """The content of a source file, for the key (xxh3-128: an image costs microseconds, not a sha256's 0.1 ms)."""
    return xxhash.xxh3_128_hexdigest(path.read_bytes())[:24]


def _packed_size(shape: tuple[int, int]) -> int:
    return (shape[0] * shape[1] + 7) // 8


class InputCache:
    """`<root>/inputs/<key>.bin` per image (header, pixels, mask, packed source-size mask); counts hits and
    misses for the job's record."""

    def __init__(self, root: str | Path, hw: tuple[int, int], prep: Preprocessing, summary: MaskSummary | None = None):
        self.dir = Path(root) / "inputs"
        self.hw, self.prep, self.summary = hw, prep, summary or _NoSummary()
        self.hits = self.misses = 0
        self._count = threading.Lock()  # the feed's worker threads read entries side by side
        self._paths: dict[tuple[Path, Path], Path] = {}  # one job's passes read each source file once

    def _path(self, sample: Sample) -> Path:
        files = (sample.image, sample.mask)
        if files not in self._paths:
            h, w = self.hw
            names = f"{h}x{w}-{self.prep.key()}-{self.summary.key}-v{PREPROCESS_VERSION}"
            key = f"{_digest(sample.image)}-{_digest(sample.mask)}-{names}"
            self._paths[files] = self.dir / f"{key}.bin"
        return self._paths[files]

    def read_into(
        self, sample: Sample, pixels: np.ndarray, mask: np.ndarray, full_mask: bool = False
    ) -> SourceMask | None:
        """Fill `pixels` (uint8 HxWx3) and `mask` (uint8 HxW), both C-contiguous, at model size: from the
        cache, else computed (a BadSampleError then propagates) and stored. With `full_mask`, also return the
        mask at the source frame size with its summary (fresh arrays), else None."""
        path = self._path(sample)
        hit, full = self._load(path, pixels, mask, full_mask)
        if not hit:
            fresh_pixels, fresh_mask, decoded = load_pair_full(sample, self.hw, self.prep)
            pixels[...], mask[...] = fresh_pixels, fresh_mask
            full = SourceMask.of(decoded, self.summary)
            self._store(path, pixels, mask, full)
        with self._count:
            self.hits += hit
            self.misses += not hit
        return full if full_mask else None

    def _load(
        self, path: Path, pixels: np.ndarray, mask: np.ndarray, full_mask: bool
    ) -> tuple[bool, SourceMask | None]:
        """Whether a whole, intact entry of this size was read into the buffers (else they hold garbage), and
        the source-size mask where asked for and read."""
        header = bytearray(HEADER.size)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False, None  # absent: the usual miss
        try:
            if os.preadv(fd, [header], 0) != HEADER.size:
                return False, None
            magic, height, width, full_h, full_w, foreground, checksum, full_checksum = HEADER.unpack(header)
            shape, dtype = self.summary.layout((full_h, full_w))
            packed = np.empty(_packed_size((full_h, full_w)) if full_mask else 0, np.uint8)  # read if asked
            summary = np.empty(shape if full_mask else 0, dtype)
            tail = _packed_size((full_h, full_w)) + int(np.prod(shape)) * dtype.itemsize
            if (
                magic != MAGIC
                or (height, width) != self.hw
                or os.fstat(fd).st_size != HEADER.size + pixels.nbytes + mask.nbytes + tail
            ):
                return False, None
            wanted = pixels.nbytes + mask.nbytes + packed.nbytes + summary.nbytes
            if os.preadv(fd, [pixels, mask, packed, summary], HEADER.size) != wanted:
                return False, None
        except OSError:
            return False, None
        finally:
            os.close(fd)
        if checksum != array_checksum(pixels, mask) or (full_mask and full_checksum != array_checksum(packed, summary)):
            return False, None
        return True, SourceMask(packed, (full_h, full_w), foreground, summary) if full_mask else None

    def _store(self, path: Path, pixels: np.ndarray, mask: np.ndarray, full: SourceMask) -> None:
        """Best effort: a full disk costs the cache entry, not the job."""
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp")
        checksums = (array_checksum(pixels, mask), array_checksum(full.packed, full.summary))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(HEADER.pack(MAGIC, *self.hw, *full.shape, full.pixels, *checksums))
                for part in (pixels, mask, full.packed, np.ascontiguousarray(full.summary)):
                    f.write(part.data)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("input cache: could not store %s (%s); continuing without it", path.name, exc)

    def record(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}
