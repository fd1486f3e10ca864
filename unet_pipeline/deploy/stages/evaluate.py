"""Inference + Dice over the evaluation images, in batches of the configured size."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from unet_pipeline.core import BadSampleError
from unet_pipeline.data import DEFAULT_PREP, InputCache, Preprocessing, Sample
from unet_pipeline.deploy.stages.feed import Batch, Feeder
from unet_pipeline.engines import BuildSpec, Session
from unet_pipeline.metrics import dice_full_exact, dice_of_batch, warm_up
from unet_pipeline.record import EndToEnd


@dataclass
class Evaluation:
    ids: list[str] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    dice_full: list[float] = field(default_factory=list)  # at the source frame size (empty: not asked for)
    seconds: float = 0.0  # the whole loop: decode, preprocess, infer, postprocess, Dice
    engine_seconds: float = 0.0  # waiting for the engine's logits (it also runs while the previous batch is scored)
    wait_seconds: float = 0.0  # the loop waiting for a prepared batch (engine idle: the feed is behind)
    postprocess_seconds: float = 0.0  # argmax + Dice between engine calls
    fullres_seconds: float = 0.0  # of which: upsampling the logits and Dice at the source frame size
    preprocess_seconds: float = 0.0  # CPU time of the feed's threads: decode + resize + normalize, images and masks
    skipped: list[dict[str, str]] = field(default_factory=list)  # data.on_bad_sample=skip: {"id", "error"}

    @property
    def mean_dice(self) -> float:
        return float(np.mean(self.dice))

    @property
    def throughput_ips(self) -> float:
        return len(self.dice) / self.seconds

    def figures(self) -> EndToEnd:
        """The end-to-end record of this pass (result.json -> benchmark.end_to_end)."""
        n = len(self.dice)
        return EndToEnd(
            throughput_ips=self.throughput_ips,
            preprocess_ms_per_image=1e3 * self.preprocess_seconds / n,
            feed_wait_ms_per_image=1e3 * self.wait_seconds / n,
            postprocess_ms_per_image=1e3 * self.postprocess_seconds / n,
            fullres_ms_per_image=1e3 * self.fullres_seconds / n if self.dice_full else None,
            engine_share=self.engine_seconds / self.seconds,
            images=n,
            seconds=round(self.seconds, 3),
        )


def pad_batch(batch: np.ndarray, spec: BuildSpec) -> np.ndarray:
    """Zero-pad a short batch to the smallest the artifact accepts (static: `batch`; dynamic: `batch_min`)."""
    size = max(spec.batch_dims[0], len(batch))
    if len(batch) >= size:
        return batch
    pad = np.zeros((size - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, pad])


def load_usable(samples: Iterable[Sample], load, skip_bad: bool, skipped: list[dict[str, str]]) -> list:
    """`load(sample)` for each sample; a bad one raises, or with `skip_bad` is listed in `skipped` and left out."""
    loaded = []
    for sample in samples:
        try:
            loaded.append(load(sample))
        except BadSampleError as exc:
            if not skip_bad:
                raise
            skipped.append({"id": sample.id, "error": str(exc)})
    return loaded


def _score(session: Session, batch: Batch, result: Evaluation) -> None:
    """Wait for the oldest batch in the engine and score it: Dice at model size, and at full resolution where
    its masks came with the batch."""
    t0 = time.perf_counter()
    logits = session.finish()[: len(batch.samples)]  # the engine's buffer: read before the batch after next
    t1 = time.perf_counter()
    scores = dice_of_batch(logits, batch.masks, batch.mask_pixels)
    result.ids.extend(s.id for s in batch.samples)
    result.dice.extend(scores.tolist())
    result.engine_seconds += t1 - t0
    if batch.full_masks is not None:
        t2 = time.perf_counter()
        result.dice_full.extend(dice_full_exact(logits, batch.full_masks).tolist())
        result.fullres_seconds += time.perf_counter() - t2
    result.postprocess_seconds += time.perf_counter() - t1


def evaluate(
    session: Session,
    samples: list[Sample],
    spec: BuildSpec,
    progress: bool,
    skip_bad: bool = False,
    prep: Preprocessing = DEFAULT_PREP,
    prefetch: int = 2,
    input_cache: InputCache | None = None,
    workers: int = 2,
    full_resolution: bool = False,
) -> Evaluation:
    """Run every sample through the engine; Dice per image at model resolution, in sample order.

    `workers` threads decode and preprocess (0: this thread, one batch at a time), up to `prefetch` batches
    ahead of the engine (stages/feed.py). With an `input_cache`, decoded and resized pixels and masks come
    from (or go to) disk. `full_resolution`: Dice also at the source frame size (metrics.dice_full_exact), its cost
    counted in `fullres_seconds`.
    """
    result = Evaluation()
    if full_resolution:
        warm_up()  # the compiled cell pass, before the clock starts
    feeder = Feeder(samples, spec, workers, prefetch, skip_bad, prep, input_cache, full_resolution, hold=1)
    start = mark = time.perf_counter()
    previous = None  # the batch running in the engine while this one is fed and the one before scored
    with tqdm(total=len(samples), desc="inference", unit="img", disable=not progress) as bar:
        for batch in feeder:
            result.wait_seconds += time.perf_counter() - mark
            result.skipped += batch.skipped
            bar.update(len(batch.samples) + len(batch.skipped))
            if batch.samples:
                session.start(batch.inputs)  # runs while `previous` is scored (engines that can)
            if previous is not None:
                _score(session, previous, result)
            previous = batch if batch.samples else None  # scored above: an empty batch leaves none in flight
            mark = time.perf_counter()
        if previous is not None:
            _score(session, previous, result)
    result.seconds = time.perf_counter() - start
    result.preprocess_seconds = feeder.cpu_seconds
    return result
