"""The model's preprocessing contract: how an image file becomes the engine's input (`Preprocessing`: resize and
decode; `input_hw`: the input size; `to_model_input`: float32 NCHW in [0, 1] or raw uint8 NHWC).

Inference, calibration and training inputs go through the same `read_pixels` + `to_model_input`, so int8 scales are
computed on exactly what the engine later sees, and the weights see what they were trained on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from unet_pipeline.core import BadSampleError, PipelineError
from unet_pipeline.data.images import (
    _JPEG_SOI,
    RESIZES,
    _decode,
    _decode_rgb,
    _read_bytes,
    read_mask,
    reduced_decode_flag,
    resize_image,
    resize_mask,
)
from unet_pipeline.data.samples import Sample


@dataclass(frozen=True)
class Preprocessing:
    """How a model's images become its input: part of the model's contract (model.resize, data.decode), used
    alike by training, calibration, evaluation and the pictures, and part of every key of what it produces.

    `resize`: `pil_bicubic` is milesial's `BasicDataset.preprocess` (PIL's bicubic widens its kernel when it
    shrinks, i.e. antialiases; milesial's released weights expect it); `cv2_cubic` is OpenCV's bicubic (no
    antialiasing, ~10x cheaper); `cv2_area` OpenCV's area average (closest of the two to PIL's). `reduced`
    (data.decode=reduced): libjpeg decodes at 1/2, 1/4 or 1/8 first. Masks are never a choice: centre-aligned
    nearest neighbour, identical to PIL's NEAREST (`resize_mask`).
    """

    resize: str = "cv2_cubic"
    reduced: bool = False

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise PipelineError(f"model.resize={self.resize} is not one of {', '.join(RESIZES)}")

    def key(self) -> str:
        """For cache keys and records, e.g. 'pil_bicubic-full'."""
        return f"{self.resize}-{'reduced' if self.reduced else 'full'}"

    @classmethod
    def of(cls, model_cfg, data_cfg) -> Preprocessing:
        """The model's declared resize and the data's decode (a config without them: the defaults)."""
        resize = getattr(model_cfg.get("resize"), "value", model_cfg.get("resize")) or "cv2_cubic"
        decode = getattr(data_cfg.get("decode"), "value", data_cfg.get("decode")) or "full"
        return cls(str(resize), decode == "reduced")


DEFAULT_PREP = Preprocessing()  # OpenCV bicubic, full decode


def read_pixels(
    path: Path, hw: tuple[int, int], prep: Preprocessing = DEFAULT_PREP
) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB uint8 HxWx3 at the model size `hw`, resized as `prep` says, and the source frame's (height, width).

    `prep.reduced` (data.decode=reduced) lets libjpeg decode a JPEG at 1/2, 1/4 or 1/8 of its size when that is
    still at least the model's size, then the same resize (none when it already fits: 1918x1280 at 1/2 is
    exactly the sample's 959x640). OpenCV's and PIL's JPEG decodes are identical (libjpeg-turbo, checked on
    Carvana frames by tests/test_reference.py), so `pil_bicubic` decodes with OpenCV too.
    """
    data = _read_bytes(path)
    if prep.reduced and data[:2].tobytes() == _JPEG_SOI:
        try:
            with Image.open(io.BytesIO(data.tobytes())) as header:  # reads the header only
                width, height = header.size
        except (UnidentifiedImageError, OSError) as exc:
            raise BadSampleError(f"cannot decode image {path} (not an image); replace or remove it") from exc
        bgr = _decode(data, path, reduced_decode_flag((height, width), hw))
        source = (height, width)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    else:
        rgb = _decode_rgb(data, path)
        source = rgb.shape[:2]
    return resize_image(rgb, hw, prep.resize), source


def to_model_input(pixels: np.ndarray, uint8_nhwc: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """What the engine is fed: the pixels as they are (model.input_format=uint8_nhwc), or float32 CHW in [0, 1].

    `out`: a row of a batch buffer to write into (the inference loop reuses its buffers).
    """
    if uint8_nhwc:
        if out is None:
            return pixels
        out[...] = pixels
        return out
    chw = np.empty((pixels.shape[2], *pixels.shape[:2]), np.float32) if out is None else out
    for plane, channel in zip(cv2.split(pixels), chw, strict=True):  # contiguous planes: 2x faster than a
        channel[...] = plane  # strided transpose; a division, not a multiplication by 1/255 (126 of the 256
        channel /= np.float32(255.0)  # values would differ by 1 ulp from milesial's `img / 255`)
    return chw


def read_input(
    path: Path, hw: tuple[int, int], prep: Preprocessing = DEFAULT_PREP, uint8_nhwc: bool = False
) -> tuple[np.ndarray, tuple[int, int]]:
    """The model input for one image file and the source frame's (height, width)."""
    pixels, source = read_pixels(path, hw, prep)
    return to_model_input(pixels, uint8_nhwc), source


def load_input(
    sample: Sample, hw: tuple[int, int], prep: Preprocessing = DEFAULT_PREP, uint8_nhwc: bool = False
) -> np.ndarray:
    """The model input for one image (used for calibration and inference alike)."""
    return read_input(sample.image, hw, prep, uint8_nhwc)[0]


def load_pair_full(
    sample: Sample, hw: tuple[int, int], prep: Preprocessing = DEFAULT_PREP
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (uint8 HxWx3) and ground-truth mask at model resolution, and the mask as decoded (source size);
    the image's and the mask's source sizes must agree."""
    pixels, (height, width) = read_pixels(sample.image, hw, prep)
    mask = read_mask(sample.mask)
    if (height, width) != mask.shape[:2]:
        raise BadSampleError(
            f"mask {sample.mask} is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{width}x{height}; masks must match their images"
        )
    return pixels, resize_mask(mask, hw), mask


def load_pair(
    sample: Sample, hw: tuple[int, int], prep: Preprocessing = DEFAULT_PREP, uint8_nhwc: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Model input and ground-truth mask at model resolution."""
    pixels, mask, _ = load_pair_full(sample, hw, prep)
    return to_model_input(pixels, uint8_nhwc), mask


def input_hw(model_cfg, data_cfg) -> tuple[int, int]:
    """Model input (height, width): the frame scaled as milesial does, int(scale * size)."""
    return int(model_cfg.scale * data_cfg.frame_height), int(model_cfg.scale * data_cfg.frame_width)
