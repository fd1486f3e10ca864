"""Inference + Dice over the evaluation images, in batches of the configured size."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..data import Sample, load_pair
from ..engines.base import BuildSpec, Session
from ..metrics import dice_per_image, predict_labels


@dataclass
class Evaluation:
    ids: list[str] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole loop: decode, preprocess, infer, postprocess, Dice
    engine_seconds: float = 0.0  # time inside Session.infer only
    preprocess_seconds: float = 0.0  # decode + resize + normalize of images and masks

    @property
    def mean_dice(self) -> float:
        return float(np.mean(self.dice))


def pad_batch(batch: np.ndarray, spec: BuildSpec) -> np.ndarray:
    """Zero-pad a short batch to the smallest the artifact accepts (static: `batch`; dynamic: `batch_min`)."""
    size = max(spec.batch_dims[0], len(batch))
    if len(batch) >= size:
        return batch
    pad = np.zeros((size - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, pad])


def evaluate(session: Session, samples: list[Sample], spec: BuildSpec, progress: bool) -> Evaluation:
    """Run every sample through the engine; Dice per image at model resolution."""
    result = Evaluation()
    start = time.perf_counter()
    with tqdm(total=len(samples), desc="inference", unit="img", disable=not progress) as bar:
        for i in range(0, len(samples), spec.batch):
            chunk = samples[i : i + spec.batch]
            t0 = time.perf_counter()
            inputs, masks = zip(*(load_pair(s, spec.input_hw) for s in chunk), strict=True)
            batch = pad_batch(np.stack(inputs), spec)
            result.preprocess_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            logits = session.infer(batch)[: len(chunk)]
            result.engine_seconds += time.perf_counter() - t0
            scores = dice_per_image(predict_labels(logits), np.stack(masks))
            result.ids.extend(s.id for s in chunk)
            result.dice.extend(scores.tolist())
            bar.update(len(chunk))
    result.seconds = time.perf_counter() - start
    return result
