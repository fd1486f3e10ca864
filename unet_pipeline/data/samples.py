"""Carvana-layout datasets: listing image/mask pairs, the car-disjoint evaluation split, and the calibration and
validation draws from other cars.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_pipeline.core import PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


_CAR_ID = re.compile(r"^(?P<car>.+)_\d+$")


@dataclass(frozen=True)
class Sample:
    """One image and its mask (None for an image to segment that has none); `id` is the file stem, e.g.
    `0cdf5b5d0ce1_01`, or its path relative to the folder segmented."""

    id: str
    image: Path
    mask: Path | None = None

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
