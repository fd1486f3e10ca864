"""Decoding and resizing: JPEG/PNG to RGB (truncated or broken files refused in one line), libjpeg's reduced
decodes, binary masks from GIF palettes, and the resizes the preprocessing contract names.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from unet_pipeline.core import BadSampleError

_CV2_RESIZE = {"cv2_cubic": cv2.INTER_CUBIC, "cv2_area": cv2.INTER_AREA}
RESIZES = ("pil_bicubic", *_CV2_RESIZE)


_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


# libjpeg's DCT scaling: decoding at 1/2, 1/4 or 1/8 size skips most of the work (one Carvana frame: 7.7 ms full,
# 2.3 ms at 1/2). Largest factor first.
_REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


# OpenCV >= 4.10 decodes straight to RGB (the same pixels, one pass and one 7 MB buffer less than BGR + cvtColor).
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", cv2.IMREAD_COLOR)


def _read_bytes(path: Path) -> np.ndarray:
    """The file's bytes; a JPEG without its end marker is refused as truncated.

    libjpeg may decode a truncated JPEG "successfully" with the missing rows grey (only a warning on
    stderr), which would silently lower Dice.
    """
    data = np.fromfile(path, dtype=np.uint8)
    if data[:2].tobytes() == _JPEG_SOI and _JPEG_EOI not in data[-64:].tobytes():
        raise BadSampleError(f"image {path} is truncated (no JPEG end marker); replace or remove it")
    return data


def _decode(data: np.ndarray, path: Path, flag: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """BGR uint8 HWC, or a one-line error naming the file."""
    bgr = cv2.imdecode(data, flag) if data.size else None
    if bgr is None:
        raise BadSampleError(f"cannot decode image {path} (not an image); replace or remove it")
    return bgr


def _decode_rgb(data: np.ndarray, path: Path) -> np.ndarray:
    rgb = _decode(data, path, _RGB_FLAG)
    return rgb if _RGB_FLAG != cv2.IMREAD_COLOR else cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)


def read_image(path: Path) -> np.ndarray:
    """Decode to RGB uint8 HWC at full size; a broken file is a one-line error naming it."""
    return _decode_rgb(_read_bytes(path), path)


def reduced_decode_flag(source_hw: tuple[int, int], target_hw: tuple[int, int]) -> int:
    """The smallest JPEG decode (1/8, 1/4, 1/2, full) that is still at least the target size in both dims."""
    (sh, sw), (th, tw) = source_hw, target_hw
    for factor, flag in _REDUCED_FLAGS:
        if -(-sh // factor) >= th and -(-sw // factor) >= tw:
            return flag
    return cv2.IMREAD_COLOR


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask to {0,1} uint8 HW. Pillow returns GIF palette indices and is ~6x faster than OpenCV."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L") if img.mode not in ("P", "L", "1") else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise BadSampleError(f"cannot decode mask {path} ({exc.__class__.__name__}); replace or remove it") from exc
    arr = arr.astype(np.uint8, copy=False)
    foreground = arr > 0
    top = int(arr.max())  # cheap checks first: a full histogram of 2.4 M pixels costs as much as the decode
    if top > 1 and (top != 255 or np.count_nonzero(arr[foreground] != 255)):
        values = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))[:6].tolist()
        raise BadSampleError(f"mask {path} has values {values}; masks must be binary, {{0,1}} or {{0,255}}")
    return foreground.astype(np.uint8)


def resize_image(rgb: np.ndarray, hw: tuple[int, int], method: str = "cv2_cubic") -> np.ndarray:
    """RGB uint8 HWC at the model's input size by `method` (Preprocessing.resize); no copy when it already fits."""
    h, w = hw
    if rgb.shape[:2] == (h, w):
        return rgb
    if method == "pil_bicubic":
        return np.asarray(Image.fromarray(rgb).resize((w, h), resample=Image.Resampling.BICUBIC))
    return cv2.resize(rgb, (w, h), interpolation=_CV2_RESIZE[method])


def resize_mask(mask: np.ndarray, hw: tuple[int, int], dst: np.ndarray | None = None) -> np.ndarray:
    """{0,1} mask at model resolution by centre-aligned nearest neighbour: output pixel x takes source pixel
    floor((x + 0.5) * s), as PIL's NEAREST (milesial's ground truth) does. OpenCV's INTER_NEAREST takes
    floor(x * s) instead, shifting the ground truth by half a source pixel (at scale 0.5, 1,185 of a frame's
    pixels differ from PIL's); INTER_NEAREST_EXACT is identical to PIL's."""
    h, w = hw
    return cv2.resize(mask, (w, h), dst=dst, interpolation=cv2.INTER_NEAREST_EXACT)
