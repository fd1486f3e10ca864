"""Carvana-layout datasets: listing, the car-disjoint split, calibration draw, decoding and preprocessing.

Inference, calibration and training inputs go through the same `read_pixels` + `to_model_input` under the model's
`Preprocessing`, so int8 scales are computed on exactly what the engine later sees, and the weights see what they were
trained on.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadSampleError, PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_CV2_RESIZE = {"cv2_cubic": cv2.INTER_CUBIC, "cv2_area": cv2.INTER_AREA}
RESIZES = ("pil_bicubic", *_CV2_RESIZE)


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


_CAR_ID = re.compile(r"^(?P<car>.+)_\d+$")


@dataclass(frozen=True)
class Sample:
    """One image/mask pair; `id` is the file stem, e.g. `0cdf5b5d0ce1_01`."""

    id: str
    image: Path
    mask: Path

    @property
    def car(self) -> str:
        return car_id(self.id)


def car_id(sample_id: str) -> str:
    """The car an image shows: the id before its trailing `_NN` view number."""
    match = _CAR_ID.match(sample_id)
    return match.group("car") if match else sample_id


def _stable_key(text: str) -> str:
    """A platform- and version-independent order for deterministic choices."""
    return hashlib.sha1(text.encode()).hexdigest()


def require_root(root: str | None, key: str = "data.root") -> Path:
    if root in (None, ""):
        raise PipelineError(
            f"{key} is not set: pass {key}=<dir with imgs/ and masks/> or export CARVANA_DATASETS_PATH=<dir>"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise PipelineError(f"{key}={root} is not a directory (it must hold imgs/ and masks/)")
    return path


def list_samples(root: str | None, data_cfg, key: str = "data.root") -> list[Sample]:
    """Every image with its mask under a Carvana-layout root, sorted by id.

    An image without a mask, or a mask without an image, is an error: evaluating a silently shrunken
    set would make figures incomparable.
    """
    base = require_root(root, key)
    images_dir, masks_dir = base / data_cfg.images_dir, base / data_cfg.masks_dir
    for sub in (images_dir, masks_dir):
        if not sub.is_dir():
            raise PipelineError(f"{key}={root} has no {sub.name}/ directory (expected {images_dir} and {masks_dir})")
    images = {p.stem: p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    suffix = data_cfg.mask_suffix
    masks = {p.stem[: -len(suffix)]: p for p in masks_dir.iterdir() if p.stem.endswith(suffix)}
    if not images:
        raise PipelineError(f"{key}={root}: {images_dir} holds no images (*.jpg, *.png)")
    no_mask, no_image = sorted(images.keys() - masks.keys()), sorted(masks.keys() - images.keys())
    if no_mask:
        raise PipelineError(
            f"{len(no_mask)} image(s) in {images_dir} have no mask, e.g. {no_mask[0]} "
            f"(expected {masks_dir / (no_mask[0] + suffix)}.gif); add the masks or remove the images"
        )
    if no_image:
        raise PipelineError(
            f"{len(no_image)} mask(s) in {masks_dir} have no image, e.g. {no_image[0]}; "
            "add the images or remove the masks"
        )
    return [Sample(i, images[i], masks[i]) for i in sorted(images)]


def held_out_cars(cars: set[str], val_fraction: float) -> set[str]:
    """A deterministic, car-disjoint share of the cars (at least one), chosen by a stable hash."""
    if not 0.0 < val_fraction < 1.0:
        raise PipelineError(f"data.val_fraction={val_fraction} must be between 0 and 1 (exclusive)")
    count = max(1, round(len(cars) * val_fraction))
    return set(sorted(cars, key=_stable_key)[:count])


def select_eval(samples: list[Sample], data_cfg) -> list[Sample]:
    """The evaluation images: the held-out cars (split=val) or everything, capped at data.num_images.

    Ordered by a stable hash of the id so that a cap such as num_images=16 spans several cars.
    """
    split = str(getattr(data_cfg.split, "value", data_cfg.split))
    if split == "val":
        val_cars = held_out_cars({s.car for s in samples}, data_cfg.val_fraction)
        samples = [s for s in samples if s.car in val_cars]
    ordered = sorted(samples, key=lambda s: _stable_key(s.id))
    if data_cfg.num_images is not None:
        if data_cfg.num_images <= 0:
            raise PipelineError(f"data.num_images={data_cfg.num_images} must be positive (or null for all)")
        ordered = ordered[: data_cfg.num_images]
    return ordered


def select_calibration(
    candidates: list[Sample], eval_samples: list[Sample], num_samples: int, seed: int
) -> tuple[list[Sample], bool]:
    """Draw `num_samples` calibration images from cars outside the evaluation set.

    Returns (samples, overlaps_eval). If the disjoint pool is too small (e.g. split=all on the same root),
    the draw falls back to the whole pool and says so through `overlaps_eval`; the caller warns and
    records it.
    """
    if num_samples <= 0:
        raise PipelineError(f"calibration.num_samples={num_samples} must be positive")
    eval_cars = {s.car for s in eval_samples}
    disjoint = [s for s in candidates if s.car not in eval_cars]
    pool, overlaps = (disjoint, False) if len(disjoint) >= num_samples else (candidates, True)
    if len(pool) < num_samples:
        raise PipelineError(
            f"calibration.num_samples={num_samples} but calibration.root holds only {len(pool)} images; "
            "lower calibration.num_samples or point calibration.root at a larger set"
        )
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(pool), size=num_samples, replace=False).tolist())
    return [pool[i] for i in picks], overlaps


def select_validation(
    candidates: list[Sample], eval_samples: list[Sample], calibration: list[Sample], num_samples: int, seed: int
) -> list[Sample]:
    """Held-apart images for accuracy-aware quantization: cars outside evaluation, images outside calibration.

    Why apart from both: a Dice budget checked on calibration images flatters the quantizer, and one checked
    on evaluation images would tune the model to the figure it is then judged by.
    """
    if num_samples <= 0:
        raise PipelineError(f"calibration.validation_samples={num_samples} must be positive with max_dice_drop")
    eval_cars, used = {s.car for s in eval_samples}, {s.id for s in calibration}
    pool = [s for s in candidates if s.car not in eval_cars and s.id not in used]
    if len(pool) < num_samples:
        raise PipelineError(
            f"calibration.validation_samples={num_samples} but only {len(pool)} images are outside the evaluation "
            "cars and the calibration images; lower calibration.validation_samples or calibration.num_samples"
        )
    rng = np.random.default_rng([seed, 1])  # another stream than the calibration draw of the same seed
    picks = sorted(rng.choice(len(pool), size=num_samples, replace=False).tolist())
    return [pool[i] for i in picks]


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
