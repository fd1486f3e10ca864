"""Inference + Dice over the evaluation images, in batches of the configured size."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
from tqdm import tqdm

from ..data import Sample, load_pair, to_model_input
from ..engines.base import BuildSpec, Session
from ..errors import BadSampleError
from ..input_cache import InputCache
from ..metrics import dice_per_image, predict_labels


@dataclass
class Evaluation:
    ids: list[str] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    seconds: float = 0.0  # the whole loop: decode, preprocess, infer, postprocess, Dice
    engine_seconds: float = 0.0  # time inside Session.infer only
    preprocess_seconds: float = 0.0  # decode + resize + normalize of images and masks
    skipped: list[dict[str, str]] = field(default_factory=list)  # data.on_bad_sample=skip: {"id", "error"}

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


@dataclass
class _Prepared:
    samples: tuple[Sample, ...]
    batch: np.ndarray | None  # padded to what the artifact accepts; None when every sample was skipped
    masks: np.ndarray | None
    cpu_seconds: float  # CPU time of the preparing thread: decode, resize, normalize, masks
    skipped: list[dict[str, str]]


Loader = Callable[[Sample], tuple[np.ndarray, np.ndarray]]  # sample -> (model input, mask at model size)


def _prepare(chunk: list[Sample], spec: BuildSpec, load: Loader, skip_bad: bool) -> _Prepared:
    start, skipped = time.thread_time(), []
    pairs = load_usable(chunk, lambda s: (s, *load(s)), skip_bad, skipped)
    if not pairs:
        return _Prepared((), None, None, time.thread_time() - start, skipped)
    samples, inputs, masks = zip(*pairs, strict=True)
    batch = pad_batch(np.stack(inputs), spec)
    return _Prepared(samples, batch, np.stack(masks), time.thread_time() - start, skipped)


def _prepared_batches(
    chunks: list[list[Sample]], spec: BuildSpec, load: Loader, skip_bad: bool, prefetch: int
) -> Iterator[_Prepared]:
    """Prepared batches in order: in this thread (prefetch=0), or up to `prefetch` ahead in a worker."""
    if prefetch <= 0:
        yield from (_prepare(chunk, spec, load, skip_bad) for chunk in chunks)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        upcoming = iter(chunks)
        pending = deque(pool.submit(_prepare, c, spec, load, skip_bad) for c in islice(upcoming, prefetch))
        while pending:
            prepared = pending.popleft().result()
            following = next(upcoming, None)
            if following is not None:  # queued before the caller runs the engine on `prepared`
                pending.append(pool.submit(_prepare, following, spec, load, skip_bad))
            yield prepared


def evaluate(
    session: Session,
    samples: list[Sample],
    spec: BuildSpec,
    progress: bool,
    skip_bad: bool = False,
    reduced: bool = False,
    prefetch: int = 2,
    input_cache: InputCache | None = None,
) -> Evaluation:
    """Run every sample through the engine; Dice per image at model resolution.

    With `prefetch` > 0 a background thread decodes and preprocesses up to that many batches ahead while
    the engine runs the current one (OpenCV and Pillow release the GIL); results keep the sample order.
    With an `input_cache`, decoded and resized pixels and masks come from (or go to) disk.
    """
    if input_cache is None:

        def load(s: Sample) -> tuple[np.ndarray, np.ndarray]:
            return load_pair(s, spec.input_hw, reduced, spec.uint8_nhwc)
    else:

        def load(s: Sample) -> tuple[np.ndarray, np.ndarray]:
            pixels, mask = input_cache.pair(s)
            return to_model_input(pixels, spec.uint8_nhwc), mask

    result = Evaluation()
    chunks = [samples[i : i + spec.batch] for i in range(0, len(samples), spec.batch)]
    start = time.perf_counter()
    with tqdm(total=len(samples), desc="inference", unit="img", disable=not progress) as bar:
        for prepared in _prepared_batches(chunks, spec, load, skip_bad, prefetch):
            result.preprocess_seconds += prepared.cpu_seconds
            result.skipped += prepared.skipped
            bar.update(len(prepared.samples) + len(prepared.skipped))
            if prepared.batch is None:
                continue
            t0 = time.perf_counter()
            logits = session.infer(prepared.batch)[: len(prepared.samples)]
            result.engine_seconds += time.perf_counter() - t0
            scores = dice_per_image(predict_labels(logits), prepared.masks)
            result.ids.extend(s.id for s in prepared.samples)
            result.dice.extend(scores.tolist())
    result.seconds = time.perf_counter() - start
    return result
