"""Segment new images with a bundle (or a configuration, built or taken from the cache): a mask per image.

The same pipelined feed as evaluation (worker threads decode and resize while the engine runs), the same mask as
the evaluation job's `save.masks` (logits upsampled to each image's own size, then argmax), and the same Dice
where masks are given. Encoding and writing the masks overlaps the engine in a writer thread; at most a few
batches are in flight, so memory does not grow with the number of images.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from unet_pipeline.core import PipelineError, write_atomic, write_json
from unet_pipeline.data import Preprocessing, Sample
from unet_pipeline.data.rle import rle_encode
from unet_pipeline.deploy.segment_io import Outputs, check_output, list_images, shard_suffix
from unet_pipeline.deploy.stages.evaluate import pad_batch
from unet_pipeline.deploy.stages.feed import Feeder
from unet_pipeline.deploy.stages.save import write_mask_png
from unet_pipeline.engines import BuildSpec, Session
from unet_pipeline.metrics import dice_full_exact, dice_of_batch, fast_upsampled_labels, warm_up

log = logging.getLogger(__name__)
IN_FLIGHT = 2  # batches whose masks may still be encoding while the engine runs the next


@dataclass
class SegmentRequest:
    """What to segment and how to write it (the `segment` config's own keys)."""

    input: Path
    output: Path
    masks: Path | None = None
    output_format: str = "png"  # png | rle | both
    overwrite: bool = False
    on_bad_image: str = "skip"  # skip | fail
    shard: int = 0
    num_shards: int = 1
    workers: int = 2
    prefetch_batches: int = 2
    progress: bool = True


@dataclass
class SegmentResult:
    """What a run did: images segmented, already there, skipped as unreadable; speed; Dice where masks were given."""

    images: int = 0
    segmented: int = 0
    already_done: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dice: list[float] = field(default_factory=list)
    dice_full: list[float] = field(default_factory=list)

    @property
    def throughput_ips(self) -> float:
        return self.segmented / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "segmented": self.segmented,
            "already_done": self.already_done,
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "throughput_ips": round(self.throughput_ips, 3),
            "dice": float(np.mean(self.dice)) if self.dice else None,
            "dice_full": float(np.mean(self.dice_full)) if self.dice_full else None,
        }


def segment(
    request: SegmentRequest, session: Session, spec: BuildSpec, prep: Preprocessing, about: dict
) -> SegmentResult:
    """Segment this shard's images that are not done yet; `about` (the bundle or configuration) goes into the run's
    segment.json beside the outputs, with what the run did."""
    check_output(request.input, request.output, request.output_format)
    samples = list_images(request.input, request.masks, request.shard, request.num_shards)
    outputs = Outputs(request.output, request.output_format, shard_suffix(request.shard, request.num_shards))
    outputs.open(request.overwrite, samples)
    result = SegmentResult(images=len(samples))
    todo = [s for s in samples if request.overwrite or not outputs.done(s, _name(request, s))]
    result.already_done = len(samples) - len(todo)
    try:
        _run(request, session, spec, prep, todo, outputs, result)
    finally:
        outputs.close()
        _write_records(request, outputs, result, about)
    return result


def _run(request, session, spec, prep, todo: list[Sample], outputs: Outputs, result: SegmentResult) -> None:
    """The feed, the engine and the writer, overlapped: batch k+1 decodes while k runs and k-1 is written."""
    feeder = Feeder(todo, spec, request.workers, request.prefetch_batches, skip_bad=True, prep=prep,
                    full_masks=request.masks is not None, masks=request.masks is not None)  # fmt: skip
    pending: deque[Future] = deque()
    warm_up()  # the compiled cell pass, before the clock starts
    start = time.perf_counter()
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="write") as writer,
        tqdm(total=len(todo), desc="segment", unit="img", disable=not request.progress) as bar,
    ):
        for batch in feeder:
            _refuse_or_skip(request, batch.skipped, result)
            n = len(batch.samples)
            if n:
                logits = session.infer(pad_batch(batch.inputs, spec))[:n]
                if request.masks is not None:
                    result.dice += dice_of_batch(logits, batch.masks, batch.mask_pixels).tolist()
                    result.dice_full += dice_full_exact(logits, batch.full_masks).tolist()
                pending.append(writer.submit(_write_batch, request, outputs, batch.samples, logits, batch.sources))
            while len(pending) > IN_FLIGHT or (pending and pending[0].done()):
                result.segmented += pending.popleft().result()
            bar.update(n + len(batch.skipped))
        while pending:
            result.segmented += pending.popleft().result()
    result.seconds = time.perf_counter() - start


def _write_batch(request, outputs: Outputs, samples: list[Sample], logits: np.ndarray, sources) -> int:
    """Each image's mask at its own size: a PNG and/or a CSV row (rows made durable together)."""
    rows = []
    for sample, one, (height, width) in zip(samples, logits, sources, strict=True):
        labels = fast_upsampled_labels(one, height, width)
        if outputs.pngs:
            path = outputs.png_path(sample)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_mask_png(path, labels)
        if outputs.rle:
            rows.append((_name(request, sample), rle_encode(labels)))
    outputs.add_rows(rows)
    return len(samples)


def _refuse_or_skip(request: SegmentRequest, bad: list[dict[str, str]], result: SegmentResult) -> None:
    if bad and request.on_bad_image == "fail":
        raise PipelineError(f"{bad[0]['error']} (on_bad_image=skip lists it in skipped.csv and goes on)")
    result.skipped += bad


def _name(request: SegmentRequest, sample: Sample) -> str:
    """The image as the CSV names it: its path under the input folder, suffix included (Carvana's `img`)."""
    return str(sample.image.relative_to(request.input))


def _write_records(request: SegmentRequest, outputs: Outputs, result: SegmentResult, about: dict) -> None:
    """skipped<shard>.csv (each unreadable image and why) and segment<shard>.json (what the run was and did)."""
    lines = ["image,reason"] + [f"{s['id']},{json.dumps(s['error'])}" for s in result.skipped]
    if result.skipped or (request.output / f"skipped{outputs.suffix}.csv").exists():
        write_atomic(request.output / f"skipped{outputs.suffix}.csv", "\n".join(lines) + "\n")
    write_json(request.output / f"segment{outputs.suffix}.json", {**about, "result": result.summary()})
