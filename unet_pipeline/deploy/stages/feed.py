"""Batches for the inference loop, prepared by worker threads into a ring of buffers that are reused.

Why this shape: end-to-end throughput stays at the engine's only while the host work around each batch
(JPEG decode, resize, normalize, mask decode) costs little of the engine's time. Three things keep it cheap:
- every buffer is allocated once and filled in place: a fresh 30 MB batch per call costs more in page
  faults (several ms on a VM) than the copy itself, and stacking single images copies everything again;
- an image and its mask are separate tasks, so `workers` threads decode them side by side (OpenCV and
  Pillow release the GIL), which halves the wall time of a batch of one;
- up to `ahead` batches are prepared while the engine runs the current one.
More threads are not better: on a CPU the engine already uses every core, and beside an eager PyTorch engine
on a GPU the workers compete for the GIL with its kernel launches. The defaults (2 workers, 2 batches ahead) are
measured: README "Options that make the pipeline keep up with the engine"."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from unet_pipeline.core import BadSampleError, PipelineError
from unet_pipeline.data import (
    DEFAULT_PREP,
    InputCache,
    Preprocessing,
    Sample,
    read_mask,
    read_pixels,
    resize_mask,
    to_model_input,
)
from unet_pipeline.engines import BuildSpec
from unet_pipeline.metrics import FullTruth


def check_settings(workers: int, ahead: int) -> None:
    """data.workers and data.prefetch_batches, refused in one line before any work when negative."""
    if workers < 0 or ahead < 0:
        raise PipelineError(
            f"data.workers={workers} / data.prefetch_batches={ahead} must be 0 or more "
            "(workers=0: decode in the main thread; prefetch_batches=0: prepare a batch, then infer it)"
        )


@dataclass
class Batch:
    """One prepared batch. Its arrays are views into the ring: valid until the next batch is requested."""

    samples: list[Sample]  # the usable samples, rows 0..n-1
    inputs: np.ndarray  # what the engine is fed: the samples, zero rows up to the smallest batch it accepts
    masks: np.ndarray  # (n, H, W) bool ground truth at model resolution
    mask_pixels: np.ndarray  # (n,) foreground pixels of each mask (Dice's |T|, counted by the worker)
    full_masks: list[FullTruth] | None = None  # (n) the masks at the source frame size, for full-resolution Dice
    skipped: list[dict[str, str]] = field(default_factory=list)  # data.on_bad_sample=skip: {"id", "error"}
    sources: list[tuple[int, int]] | None = None  # (n) each image's own (height, width), where images were decoded


class _Slot:
    """The buffers of one batch in flight."""

    def __init__(self, spec: BuildSpec):
        rows = max(spec.batch, spec.batch_dims[0])
        self.inputs = np.zeros(spec.input_shape(rows), np.uint8 if spec.uint8_nhwc else np.float32)
        self.masks = np.zeros((spec.batch, *spec.input_hw), np.uint8)  # {0, 1}: viewed as bool
        self.mask_pixels = np.zeros(spec.batch, np.int64)
        self.full_masks: list[FullTruth | None] = [None] * spec.batch  # for full-resolution Dice: bit-packed,
        # with the mask's counts per model cell (0.3 + 0.2-0.6 MB at 1918x1280)


Task = Callable[[], object]


class Feeder:
    """Yields the batches of `samples` in order, prepared by `workers` threads up to `ahead` batches early.

    `workers=0` prepares each batch in the calling thread when it is asked for (and so ignores `ahead`). A batch's
    arrays stay valid until `hold` + 1 more batches have been asked for.
    `cpu_seconds` sums the CPU time of the preparing threads (decode, resize, normalize, masks).
    """

    def __init__(
        self,
        samples: list[Sample],
        spec: BuildSpec,
        workers: int,
        ahead: int,
        skip_bad: bool,
        prep: Preprocessing = DEFAULT_PREP,
        input_cache: InputCache | None = None,
        full_masks: bool = False,
        masks: bool = True,
        hold: int = 0,
    ):
        self.spec, self.skip_bad, self.prep, self.input_cache = spec, skip_bad, prep, input_cache
        self.full_masks, self.masks = full_masks, masks  # masks=False: images alone (segmenting new images)
        self.chunks = [samples[i : i + spec.batch] for i in range(0, len(samples), spec.batch)]
        check_settings(workers, ahead)
        self.workers = workers
        self.ahead = ahead if workers else 0
        # `hold` batches stay valid after the next is yielded (one in the engine while the one before is scored)
        self.slots = [_Slot(spec) for _ in range(min(self.ahead + 1 + hold, len(self.chunks)) or 1)]
        self.cpu_seconds = 0.0
        self._scratch = threading.local()

    # --- per-sample tasks: each fills its rows of a slot and returns what the batch check needs
    def _image_task(self, sample: Sample, slot: _Slot, row: int) -> Task:
        def run() -> tuple[int, int]:
            pixels, source = read_pixels(sample.image, self.spec.input_hw, self.prep)
            to_model_input(pixels, self.spec.uint8_nhwc, out=slot.inputs[row])
            return source

        return run

    def _mask_task(self, sample: Sample, slot: _Slot, row: int) -> Task:
        def run() -> tuple[int, int]:
            mask = read_mask(sample.mask)
            resize_mask(mask, self.spec.input_hw, dst=slot.masks[row])
            slot.full_masks[row] = FullTruth.of(mask, self.spec.input_hw) if self.full_masks else None
            slot.mask_pixels[row] = np.count_nonzero(slot.masks[row])
            return mask.shape

        return run

    def _cached_task(self, sample: Sample, slot: _Slot, row: int) -> Task:
        """Read the entry straight into the slot (uint8 NHWC input) or into this thread's scratch pixels,
        normalized from there: nothing is allocated per image."""

        def run() -> None:
            pixels = slot.inputs[row] if self.spec.uint8_nhwc else self._scratch_pixels()
            full = self.input_cache.read_into(sample, pixels, slot.masks[row], self.full_masks)
            slot.full_masks[row] = FullTruth(full.packed, full.shape, full.pixels, full.summary) if full else None
            if not self.spec.uint8_nhwc:
                to_model_input(pixels, False, out=slot.inputs[row])
            slot.mask_pixels[row] = np.count_nonzero(slot.masks[row])

        return run

    def _scratch_pixels(self) -> np.ndarray:
        """One uint8 HxWx3 buffer per worker thread, reused for every image it reads from the cache."""
        pixels = getattr(self._scratch, "pixels", None)
        if pixels is None:
            pixels = self._scratch.pixels = np.empty((*self.spec.input_hw, 3), np.uint8)
        return pixels

    def _tasks(self, chunk: list[Sample], slot: _Slot) -> list[list[Task]]:
        """Per sample, its tasks: one from the input cache, else image and mask apart (run in parallel)."""
        if self.input_cache is not None:
            return [[self._cached_task(s, slot, row)] for row, s in enumerate(chunk)]
        if not self.masks:
            return [[self._image_task(s, slot, row)] for row, s in enumerate(chunk)]
        return [[self._image_task(s, slot, row), self._mask_task(s, slot, row)] for row, s in enumerate(chunk)]

    @staticmethod
    def _timed(task: Task) -> tuple[object, float]:
        start = time.thread_time()
        return task(), time.thread_time() - start

    # --- assembling a batch once its tasks are done
    def _assemble(self, chunk: list[Sample], slot: _Slot, outcomes: list[list[object]]) -> Batch:
        """Check each sample (its tasks succeeded, image and mask sizes agree), drop or raise on bad ones,
        move the good rows together and zero the padding rows."""
        good: list[int] = []
        skipped: list[dict[str, str]] = []
        sources: list[tuple[int, int]] = []
        for row, (sample, results) in enumerate(zip(chunk, outcomes, strict=True)):
            try:
                values = [_value(outcome) for outcome in results]
                if len(values) == 2 and values[0] != values[1]:
                    (ih, iw), (mh, mw) = values
                    raise BadSampleError(
                        f"mask {sample.mask} is {mw}x{mh} but its image is {iw}x{ih}; masks must match their images"
                    )
                good.append(row)
                sources.append(values[0])
            except BadSampleError as exc:
                if not self.skip_bad:
                    raise
                skipped.append({"id": sample.id, "error": str(exc)})
        for new, old in enumerate(good):
            if new != old:
                slot.inputs[new], slot.masks[new] = slot.inputs[old], slot.masks[old]
                slot.mask_pixels[new] = slot.mask_pixels[old]
                slot.full_masks[new] = slot.full_masks[old]
        n = len(good)
        rows = max(self.spec.batch_dims[0], n) if n else 0
        slot.inputs[n:rows] = 0  # padding of a short last batch (or rows of skipped samples)
        return Batch(
            samples=[chunk[r] for r in good],
            inputs=slot.inputs[:rows],
            masks=slot.masks[:n].view(bool),
            mask_pixels=slot.mask_pixels[:n],
            full_masks=list(slot.full_masks[:n]) if self.full_masks else None,
            skipped=skipped,
            sources=None if self.input_cache is not None else sources,
        )

    def _run_inline(self, tasks: list[list[Task]]) -> list[list[object]]:
        """Each task's value, or the BadSampleError it raised (a sample's later tasks are then not run)."""
        outcomes: list[list[object]] = []
        for per_sample in tasks:
            results: list[object] = []
            for task in per_sample:
                try:
                    value, cpu = self._timed(task)
                except BadSampleError as exc:
                    results.append(exc)
                    break
                self.cpu_seconds += cpu
                results.append(value)
            outcomes.append(results)
        return outcomes

    def __iter__(self) -> Iterator[Batch]:
        if not self.workers:
            for index, chunk in enumerate(self.chunks):
                slot = self.slots[index % len(self.slots)]
                yield self._assemble(chunk, slot, self._run_inline(self._tasks(chunk, slot)))
            return
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="feed") as pool:
            pending: deque[tuple[int, list[list[Future]]]] = deque()

            def submit(index: int) -> None:
                slot = self.slots[index % len(self.slots)]
                futures = [[pool.submit(self._timed, t) for t in ts] for ts in self._tasks(self.chunks[index], slot)]
                pending.append((index, futures))

            for index in range(min(self.ahead, len(self.chunks))):
                submit(index)
            for index, chunk in enumerate(self.chunks):
                if not pending:
                    submit(index)
                following = index + self.ahead
                if self.ahead and following < len(self.chunks):
                    submit(following)  # into the slot the previous batch, now consumed, used
                _, futures = pending.popleft()
                outcomes = [[self._collect(f) for f in fs] for fs in futures]
                try:
                    yield self._assemble(chunk, self.slots[index % len(self.slots)], outcomes)
                except BaseException:
                    for _, later in pending:
                        for f in (f for fs in later for f in fs):
                            f.cancel()
                    raise

    def _collect(self, future: Future) -> object:
        """Wait for a task: its value, or the BadSampleError it raised (raised when the batch is checked)."""
        try:
            value, cpu = future.result()
        except BadSampleError as exc:
            return exc
        self.cpu_seconds += cpu
        return value


def _value(outcome: object) -> object:
    if isinstance(outcome, BadSampleError):
        raise outcome
    return outcome
