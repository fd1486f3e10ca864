"""Training material: the three-way car split (evaluation cars never seen, validation cars apart from training
cars), the decoded arrays, and each step's batch (random crops, colour jitter, soft targets alongside).
"""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from unet_pipeline.core import PipelineError
from unet_pipeline.data import Preprocessing, Sample, held_out_cars, load_pair, select_eval, to_model_input
from unet_pipeline.training import augment


def train_val_samples(samples: list[Sample], cfg: DictConfig) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) over the cars the pipeline does not evaluate on; the two share no car.

    train.val_fraction=0 is a refit: no validation cars, every non-evaluation car trains, and the last epoch is
    kept (its epoch count chosen beforehand by a validated run of the same recipe)."""
    eval_cars = {s.car for s in select_eval(samples, cfg.data)} if cfg.data.split == "val" else set()
    pool = [s for s in samples if s.car not in eval_cars]
    refit = cfg.train.val_fraction == 0
    val_cars = set() if refit else held_out_cars({s.car for s in pool}, cfg.train.val_fraction)
    train = [s for s in pool if s.car not in val_cars]
    val = [s for s in pool if s.car in val_cars]
    if cfg.train.max_images:
        train = train[: cfg.train.max_images]
        val = val[: max(1, cfg.train.max_images // 4)]
    if not train or not (val or refit):
        raise PipelineError(f"too few cars to train: {len(train)} training and {len(val)} validation images")
    return train, val


def load_arrays(samples: list[Sample], hw: tuple[int, int], prep: Preprocessing, progress: bool, desc: str):
    """Decode and resize once, exactly as inference does (the model's Preprocessing); epochs then read from
    memory. Kept as uint8 pixels (HxWx3) and uint8 labels: a quarter of float32's memory (6 GB at 640x959)."""
    if not samples:  # a refit's validation set
        return np.empty((0, *hw, 3), np.uint8), np.empty((0, *hw), np.uint8)
    pairs = [load_pair(s, hw, prep, uint8_nhwc=True) for s in tqdm(samples, desc=desc, disable=not progress)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.uint8)


def make_batch(
    pixels: np.ndarray,
    labels: np.ndarray,
    crop: tuple[int, int] | None,
    rng: np.random.Generator,
    soft: np.ndarray | None = None,
    photometric: DictConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A training batch as the engine is fed (float32 NCHW in [0, 1], `to_model_input`), its labels and, with
    teachers, their soft targets, each image cropped at its own random offset when `crop` (height, width) is set:
    the UNet is fully convolutional, so crops of the full-size input train it at a fraction of a frame's cost.
    `photometric` (train.photometric) jitters the photos' colours, never their labels or targets."""
    if crop is not None:
        height, width = labels.shape[1:]
        tops = rng.integers(0, height - crop[0] + 1, len(pixels))
        lefts = rng.integers(0, width - crop[1] + 1, len(pixels))
        windows = [np.s_[t : t + crop[0], left : left + crop[1]] for t, left in zip(tops, lefts, strict=True)]
        pixels = np.stack([p[w] for p, w in zip(pixels, windows, strict=True)])
        labels = np.stack([m[w] for m, w in zip(labels, windows, strict=True)])
        soft = None if soft is None else np.stack([t[w] for t, w in zip(soft, windows, strict=True)])
    if photometric is not None and augment.enabled(photometric):
        pixels = augment.jitter(pixels, photometric, rng)
    x = np.stack([to_model_input(p) for p in pixels])
    targets = None if soft is None else torch.from_numpy(np.ascontiguousarray(soft))
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), targets


def crop_size(tc: DictConfig, hw: tuple[int, int]) -> tuple[int, int] | None:
    """train.crop as (height, width), checked against the model input it is cut from."""
    if not tc.crop:
        return None
    crop = (int(tc.crop[0]), int(tc.crop[1]))
    if len(tc.crop) != 2 or not (0 < crop[0] <= hw[0] and 0 < crop[1] <= hw[1]):
        raise PipelineError(
            f"train.crop={list(tc.crop)} must be [height, width] within the model input {hw[0]}x{hw[1]}; "
            "use e.g. train.crop=[320,480], or train.crop=null for whole inputs"
        )
    return crop
