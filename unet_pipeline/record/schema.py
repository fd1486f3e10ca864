"""result.json: one typed record per job, written when the job starts, as it goes and however it ends.

Why typed: the record is what every table, resume and launcher reads. A dataclass per section says what a job
writes and which stage fills it; `to_dict` gives result.json its stable layout (README, "Outputs")."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from unet_pipeline.core import library_versions, machine_info, write_atomic
from unet_pipeline.data import input_hw
from unet_pipeline.record.figures import BenchmarkFigures, EndToEnd
from unet_pipeline.record.identity import job_identity

RESULT_FILE = "result.json"
PER_IMAGE_FILE = "per_image.csv"
# Sections written only when a job has them (float jobs have no quantization, most jobs save no pictures).
_OPTIONAL = ("engine_settings", "quantization", "saved", "traceback")
_ORDER = ("status", "error", "identity", "process", "job", "metrics", "compiled", "cache", "notes", "data", "timings",
          "benchmark", "machine", "versions", "config", "started_at", "finished_at", *_OPTIONAL)  # fmt: skip


@dataclass
class JobInfo:
    """What was asked: the job's coordinates in a sweep (the table's first columns)."""

    model: str
    checkpoint: str | None
    checkpoint_sha256: str | None = None  # set when the weights are loaded
    precision: str = ""
    batch: int = 0
    shape: str = ""
    batch_range: list[int] | None = None
    input_size: list[int] = field(default_factory=list)
    decode: str = ""
    resize: str = ""  # model.resize: how images were resized (masks: always centre-aligned nearest)
    prefetch_batches: int = 0
    workers: int = 0
    align: int = 0
    align_why: str = ""  # the default on this CPU for this precision, and why (config.registry.default_align)
    input_format: str = ""
    device: str = ""
    engine: str | None = None  # set when the engine is instantiated
    engine_version: str | None = None
    overrides: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cfg: DictConfig, overrides: list[str]) -> JobInfo:
        dynamic = cfg.shape.mode.value == "dynamic"
        return cls(
            model=cfg.model.name,
            checkpoint=cfg.model.checkpoint,
            precision=str(cfg.precision.mode.value),
            batch=cfg.batch,
            shape=str(cfg.shape.mode.value),
            batch_range=[cfg.shape.batch_min, cfg.shape.batch_max] if dynamic else None,
            input_size=list(input_hw(cfg.model, cfg.data)),
            decode=str(cfg.data.decode.value),
            resize=str(cfg.model.resize.value),
            prefetch_batches=cfg.data.prefetch_batches,
            workers=cfg.data.workers,
            align=cfg.model.align,
            align_why=_align_why(cfg),
            input_format=str(cfg.model.input_format.value),
            device=cfg.device.name,
            overrides=list(overrides),
            tags=list(cfg.tags),
        )


@dataclass
class Metrics:
    dice: float | None = None  # mean Dice over the evaluation images (None for random weights)
    dice_min: float | None = None
    dice_full: float | None = None  # at the source frame size (metrics.full_resolution); None when off
    dice_full_min: float | None = None
    num_images: int = 0


@dataclass
class CacheUse:
    dir: str | None  # cache.dir, or None with cache.enabled=false
    export: dict[str, Any] | None = None  # ArtifactCache result records: key, hit, rebuilt_corrupt, path
    engine: dict[str, Any] | None = None


@dataclass
class JobRecord:
    """result.json while the stages run; `timed` stamps each stage, `to_dict` is what is written."""

    identity: str  # config hash: resume skips a completed job of the same identity
    job: JobInfo
    cache: CacheUse
    config: dict[str, Any]
    status: str = "running"  # running | completed | failed | planned
    error: str | None = None
    process: dict[str, Any] = field(default_factory=lambda: {"host": platform.node(), "pid": os.getpid()})
    metrics: Metrics = field(default_factory=Metrics)
    compiled: dict[str, Any] = field(default_factory=dict)  # what the engine reports it really built
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # which images: root, split, calibration ids, skipped
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    benchmark: BenchmarkFigures = field(default_factory=BenchmarkFigures)
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str | None] = field(default_factory=library_versions)
    started_at: str = field(default_factory=lambda: dt.datetime.now().isoformat(timespec="seconds"))
    finished_at: str | None = None
    engine_settings: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None  # int8: overflow fix (from the start), options, accuracy control
    saved: dict[str, Any] | None = None  # save.masks / save.overlays
    traceback: str | None = None  # unexpected (non-PipelineError) failures only

    @classmethod
    def start(cls, cfg: DictConfig, overrides: list[str]) -> JobRecord:
        return cls(
            identity=job_identity(cfg),
            job=JobInfo.of(cfg, overrides),
            cache=CacheUse(str(cfg.cache.dir) if cfg.cache.enabled else None),
            config=OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False),
            machine=machine_info(),
        )

    def to_dict(self) -> dict[str, Any]:
        fields = {**asdict(self), "benchmark": self.benchmark.to_dict()}
        return {key: fields[key] for key in _ORDER if key not in _OPTIONAL or fields[key] is not None}

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(time.perf_counter() - start, 3)

    def add_quantization(self, built: dict[str, Any] | None) -> None:
        """What the int8 build did (options, layers kept in float, accuracy control: its quantization.json, None for
        a float build), with this host's overflow-fix choice kept (it was recorded before the build)."""
        if built is None:
            return
        self.quantization = {**built, **(self.quantization or {})}
        control = built.get("accuracy_control")
        if control:
            kept = control["kept_float"]
            self.notes.append(
                f"max_dice_drop={control['max_dice_drop']} ({control['drop_metric']}): "
                f"validation drop {control['final_drop']:.5f}"
                + (
                    f", kept in float: {len(kept)} layer(s) at positions {control['kept_float_positions']}"
                    if kept
                    else ", no layer needed float"
                )
            )

    def add_skipped(self, stage: str, skipped: list[dict[str, str]]) -> None:
        """data.on_bad_sample=skip: the row says how many were left out, result.json says which and why."""
        if not skipped:
            return
        self.data[f"skipped_{stage}"] = skipped
        self.notes.append(
            f"{len(skipped)} bad {stage} image(s) skipped (data.on_bad_sample=skip), e.g. {skipped[0]['error']}"
        )

    def add_evaluation(self, scores: PerImage, end_to_end: EndToEnd, scored: bool) -> None:
        """Dice (not for random weights: no measurement) and the inference pass's end-to-end figures."""
        full = scored and bool(scores.dice_full)
        self.metrics = Metrics(
            dice=round(float(np.mean(scores.dice)), 6) if scored else None,
            dice_min=round(min(scores.dice), 6) if scored else None,
            dice_full=round(float(np.mean(scores.dice_full)), 6) if full else None,
            dice_full_min=round(min(scores.dice_full), 6) if full else None,
            num_images=len(scores.dice),
        )
        self.benchmark.end_to_end = end_to_end


class PerImage(Protocol):
    """Per-image scores of an evaluation (deploy's `Evaluation`): what the record and per_image.csv take of it."""

    ids: list[str]
    dice: list[float]
    dice_full: list[float]


def write_per_image(out_dir: Path, scores: PerImage, images: dict[str, Path]) -> None:
    """per_image.csv: every evaluation image's Dice, for the sweep's image-by-image comparison."""
    table = pd.DataFrame({"image_id": scores.ids, "dice": scores.dice, "image": [str(images[i]) for i in scores.ids]})
    if scores.dice_full:
        table.insert(2, "dice_full", scores.dice_full)
    write_atomic(out_dir / PER_IMAGE_FILE, table.to_csv(index=False, float_format="%.6f"))


def completed_before(out_dir: Path, identity: str) -> dict[str, Any] | None:
    """The job dir's record if it says completed for the same config identity (resume skips the job)."""
    try:
        previous = json.loads((out_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(previous, dict) and previous.get("status") == "completed" and previous.get("identity") == identity:
        return previous
    return None


def _align_why(cfg: DictConfig) -> str:
    """Why model.align is what it is: this CPU's default for the precision, or set by the config."""
    from unet_pipeline.config.registry import default_align

    value, why = default_align(cfg.precision.mode)
    if cfg.model.align == value:
        return f"default here: {why}"
    return f"set by the config (the default here would be {value}: {why})"
