"""One job: the stages in order, and a result.json record written whatever happens.

Why a record per job: Hydra skips `on_multirun_end` when a job raises, and other launchers run jobs
elsewhere; tables are therefore always aggregated from these files on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from . import isa
from .cache import ArtifactCache, NoCache
from .data import Sample, list_samples, load_input, select_calibration, select_eval, select_validation
from .engines.base import BuildSpec, Engine
from .errors import PipelineError
from .input_cache import InputCache
from .keys import engine_parts, export_parts, job_identity
from .model import build_unet, file_sha256, for_deployment, input_hw, load_unet
from .records import write_atomic, write_json
from .spec import build_spec, for_cpu
from .stages.benchmark import (
    device_lock,
    interleave,
    machine_info,
    median_rounds,
    run_vendor_tool,
    time_async,
    time_sync,
)
from .stages.build import refuse_unrunnable_precision, verify_compiled
from .stages.calibrate import load_quantizer_data
from .stages.evaluate import Evaluation, evaluate, pad_batch
from .stages.export import export_graph
from .stages.feed import check_settings as check_feed_settings
from .stages.quantize import ValidationSet, build_quantized
from .stages.quantize import read_record as read_quantization_record
from .stages.save import save_outputs
from .synthetic import ensure_configured

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PLAN_FILE = "plan.json"
RANDOM_WEIGHTS = "random"
PER_IMAGE_FILE = "per_image.csv"
_LIBRARIES = ("torch", "openvino", "nncf", "numpy", "opencv-python-headless", "pillow", "hydra-core")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class JobRecord:
    """Accumulates result.json while the stages run; `timed` stamps each stage."""

    def __init__(self, cfg: DictConfig, overrides: list[str]):
        self.data: dict[str, Any] = {
            "status": "running",
            "error": None,
            "identity": job_identity(cfg),
            "process": {"host": platform.node(), "pid": os.getpid()},
            "job": {
                "model": cfg.model.name,
                "checkpoint": cfg.model.checkpoint,
                "checkpoint_sha256": None,
                "precision": str(cfg.precision.mode.value),
                "batch": cfg.batch,
                "shape": str(cfg.shape.mode.value),
                "batch_range": [cfg.shape.batch_min, cfg.shape.batch_max]
                if cfg.shape.mode.value == "dynamic"
                else None,
                "input_size": list(input_hw(cfg.model, cfg.data)),
                "decode": str(cfg.data.decode.value),
                "prefetch_batches": cfg.data.prefetch_batches,
                "workers": cfg.data.workers,
                "align": cfg.model.align,
                "input_format": str(cfg.model.input_format.value),
                "device": cfg.device.name,
                "engine": None,
                "engine_version": None,
                "overrides": overrides,
                "tags": list(cfg.tags),
            },
            "metrics": {"dice": None, "dice_min": None, "num_images": 0},
            "compiled": {},
            "cache": {"dir": str(cfg.cache.dir) if cfg.cache.enabled else None, "export": None, "engine": None},
            "notes": [],
            "data": {},
            "timings": {},
            "benchmark": {"engine": None, "engine_async": None, "end_to_end": None, "vendor": None},
            "machine": machine_info(cfg.device.kind),
            "versions": library_versions(),
            "config": OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False),
            "started_at": dt.datetime.now().isoformat(timespec="seconds"),
            "finished_at": None,
        }

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data["timings"][stage] = round(time.perf_counter() - start, 3)


def _engine(cfg: DictConfig) -> Engine:
    try:
        return hydra.utils.instantiate(cfg.engine)
    except hydra.errors.InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ModuleNotFoundError):
            raise PipelineError(
                f"engine {cfg.engine._target_.rsplit('.', 1)[-1]} needs the Python package "
                f"'{cause.name}', which is not installed; install it or choose another engine=..."
            ) from exc
        raise


@dataclass
class Selection:
    """Which images each stage uses: evaluation, calibration (quantized precisions), validation (max_dice_drop)."""

    evaluation: list[Sample]
    calibration: list[Sample] | None = None
    validation: list[Sample] | None = None


def _select_data(cfg: DictConfig, spec: BuildSpec, r: dict[str, Any]) -> Selection:
    """Evaluation images; calibration (and accuracy-control validation) images from other cars when needed."""
    generated = ensure_configured(cfg.data)
    samples = list_samples(cfg.data.root, cfg.data)
    eval_samples = select_eval(samples, cfg.data)
    if len(eval_samples) < spec.batch:
        raise PipelineError(
            f"batch={spec.batch} is larger than the {len(eval_samples)} evaluation images; "
            "lower batch or raise data.num_images"
        )
    r["data"] = {
        "root": cfg.data.root,
        "split": str(cfg.data.split.value),
        "generated": generated,
        "eval_cars": len({s.car for s in eval_samples}),
    }
    if not spec.precision.needs_calibration:
        return Selection(eval_samples)
    calibration = cfg.calibration
    pool = (
        samples
        if calibration.root == cfg.data.root
        else list_samples(calibration.root, cfg.data, key="calibration.root")
    )
    calib_samples, overlaps = select_calibration(pool, eval_samples, calibration.num_samples, calibration.seed)
    r["data"].update(
        calibration_root=calibration.root,
        calibration_images=len(calib_samples),
        calibration_overlaps_eval=overlaps,
        calibration_ids=[c.id for c in calib_samples],
    )
    if overlaps:
        log.warning(
            "calibration images come from cars in the evaluation set "
            "(calibration_overlaps_eval: true); use data.split=val or another calibration.root"
        )
    validation = None
    if spec.quant.max_dice_drop is not None:
        validation = select_validation(
            pool, eval_samples, calib_samples, calibration.validation_samples, calibration.seed
        )
        r["data"]["validation_ids"] = [v.id for v in validation]
    return Selection(eval_samples, calib_samples, validation)


def _write_plan(cfg: DictConfig, engine: Engine, spec: BuildSpec, out_dir: Path, r: dict[str, Any]) -> None:
    """dry_run=true: everything the job would build from, reviewed before spending device time."""
    selected = _select_data(cfg, spec, r)
    eval_samples, calib_samples = selected.evaluation, selected.calibration
    plan = {
        "job": r["job"],
        "engine": engine.plan(spec),
        "evaluation": {"num_images": len(eval_samples), "ids": [s.id for s in eval_samples]},
        "calibration": None
        if calib_samples is None
        else {
            "num_samples": len(calib_samples),
            "seed": cfg.calibration.seed,
            "files": [str(s.image) for s in calib_samples],
            "validation_files": [str(s.image) for s in selected.validation or []],
        },
    }
    write_json(out_dir / PLAN_FILE, plan)
    r["status"] = "planned"
    r["notes"].append(f"dry run: plan written to {PLAN_FILE}, nothing built or run")


def _run_stages(cfg: DictConfig, out_dir: Path, record: JobRecord) -> None:
    r = record.data
    engine = _engine(cfg)
    r["job"].update(engine=engine.name, engine_version=engine.version())
    r["engine_settings"] = engine.settings()
    spec = build_spec(cfg)
    engine.check(spec)
    host_isa = isa.host()
    spec, overflow = for_cpu(engine, spec, host_isa)
    if overflow is not None:
        r["quantization"] = {"overflow_fix": overflow}
    check_feed_settings(cfg.data.workers, cfg.data.prefetch_batches)
    if cfg.benchmark.repeats < 1:
        raise PipelineError(f"benchmark.repeats={cfg.benchmark.repeats} must be 1 or more")
    if cfg.dry_run:
        _write_plan(cfg, engine, spec, out_dir, r)
        return
    engine.require_runtime()
    refuse_unrunnable_precision(engine, spec, cfg.strict_precision)

    with record.timed("data"):
        selected = _select_data(cfg, spec, r)
        eval_samples = selected.evaluation

    with record.timed("load_model"):
        net = _load_model(cfg.model, r)
    artifact = _export_and_build(cfg, engine, spec, net, selected, out_dir, record, host_isa.kind)
    with record.timed("load_engine"):
        session = engine.load(artifact, spec)
        session.infer(pad_batch(spec.zeros(spec.batch), spec))  # warm-up: lazy init is not part of e2e
        r["compiled"] = session.describe()
        r["notes"] += verify_compiled(spec, r["compiled"], cfg.strict_precision)
    with device_lock(cfg.device.name, cfg.benchmark.lock_dir) as waited:
        r["benchmark"]["lock_wait_seconds"] = round(waited, 3)
        inputs = InputCache(cfg.cache.dir, spec.input_hw, _reduced(cfg)) if _cache_inputs(cfg) else None

        def end_to_end() -> Evaluation:
            return evaluate(
                session,
                eval_samples,
                spec,
                cfg.progress,
                skip_bad=_skip_bad(cfg),
                reduced=_reduced(cfg),
                prefetch=cfg.data.prefetch_batches,
                input_cache=inputs,
                workers=cfg.data.workers,
            )

        with record.timed("inference"):
            evaluation = end_to_end()
        _record_skipped(r, "evaluation", evaluation.skipped)
        if not evaluation.dice:
            raise PipelineError("every evaluation image was skipped as bad (data.on_bad_sample=skip); fix the dataset")
        _record_evaluation(r, evaluation, out_dir, {s.id: s.image for s in eval_samples})
        if cfg.benchmark.enabled:
            with record.timed("benchmark"):
                _benchmark(cfg, engine, session, artifact, spec, eval_samples, r, end_to_end, evaluation)
        r["benchmark"]["end_to_end"]["input_cache"] = inputs.record() if inputs else None
        if cfg.save.masks or cfg.save.overlays:
            with record.timed("save"):
                dice = dict(zip(evaluation.ids, evaluation.dice, strict=True))
                saved = save_outputs(
                    session, eval_samples, dice, spec, out_dir, cfg.save.masks, cfg.save.overlays, _reduced(cfg)
                )
                r["saved"] = {"masks": saved.masks, "overlays": saved.overlays, "predictions": saved.predictions}


def _export_and_build(
    cfg: DictConfig,
    engine: Engine,
    spec: BuildSpec,
    net: torch.nn.Module,
    selected: Selection,
    out_dir: Path,
    record: JobRecord,
    int8_kind: str,
) -> Path:
    """Exported graph and engine artifact from the content-addressed cache, built only on a miss.

    A quantized artifact's key holds the CPU's int8 kernel class (`int8_kind`): one built where u8 x s8
    does not saturate is never reused on a CPU where it would."""
    r = record.data
    cache = ArtifactCache(cfg.cache.dir) if cfg.cache.enabled else NoCache(out_dir)
    sha = r["job"]["checkpoint_sha256"]
    weights = f"sha256:{sha}" if sha else f"{RANDOM_WEIGHTS}:seed0"
    export_format = engine.capabilities.export_format
    with record.timed("export"):
        exported = cache.get_or_build(
            "export",
            export_parts(cfg.model, weights, spec, export_format),
            lambda out: export_graph(net, export_format, spec, out),
        )
    r["cache"]["export"] = exported.record()

    def build(out: Path) -> Path:
        if selected.calibration is None:
            return engine.build(exported.artifact, spec, None, out)
        with record.timed("calibration_data"):
            skipped: list[dict[str, str]] = []
            options = (spec, cfg.progress, _skip_bad(cfg), skipped, _reduced(cfg))
            calibration = load_quantizer_data(selected.calibration, *options)
            validation = None
            if selected.validation is not None:
                validation = ValidationSet(load_quantizer_data(selected.validation, *options, masks=True), spec)
            _record_skipped(r, "calibration", skipped)
        trials = cfg.calibration.search_trials
        return build_quantized(engine, exported.artifact, spec, calibration, validation, out, trials)

    parts = engine_parts(
        exported.key, engine, spec, cfg.calibration, selected.calibration, selected.validation, int8_kind
    )
    with record.timed("build"):
        built = cache.get_or_build("engine", parts, build)
    r["cache"]["engine"] = built.record()
    _record_quantization(r, built.artifact)
    for stage, result in (("export", exported), ("engine", built)):
        if result.rebuilt_corrupt:
            r["notes"].append(f"cache: the {stage} entry failed its integrity check and was rebuilt")
    return built.artifact


def _record_quantization(r: dict[str, Any], artifact: Path) -> None:
    """What the int8 build did (options, layers kept in float, accuracy control), from beside the artifact."""
    quantization = read_quantization_record(artifact)
    if quantization is None:
        return
    r["quantization"] = {**quantization, **r.get("quantization", {})}  # this host's overflow_fix choice kept
    control = quantization.get("accuracy_control")
    if control:
        kept = control["kept_float"]
        r["notes"].append(
            f"max_dice_drop={control['max_dice_drop']} ({control['drop_metric']}): "
            f"validation drop {control['final_drop']:.5f}"
            + (
                f", kept in float: {len(kept)} layer(s) at positions {control['kept_float_positions']}"
                if kept
                else ", no layer needed float"
            )
        )


def _skip_bad(cfg: DictConfig) -> bool:
    return cfg.data.on_bad_sample.value == "skip"


def _cache_inputs(cfg: DictConfig) -> bool:
    """data.cache_inputs=true shares decoded inputs through cache.dir (so not with cache.enabled=false)."""
    return bool(cfg.data.cache_inputs and cfg.cache.enabled)


def _reduced(cfg: DictConfig) -> bool:
    """data.decode=reduced: calibration, evaluation and the benchmark batch all decode the same way."""
    return cfg.data.decode.value == "reduced"


def _record_skipped(r: dict[str, Any], stage: str, skipped: list[dict[str, str]]) -> None:
    """data.on_bad_sample=skip: the row says how many were left out, result.json says which and why."""
    if not skipped:
        return
    r["data"][f"skipped_{stage}"] = skipped
    r["notes"].append(
        f"{len(skipped)} bad {stage} image(s) skipped (data.on_bad_sample=skip), e.g. {skipped[0]['error']}"
    )


def _benchmark(
    cfg: DictConfig,
    engine: Engine,
    session,
    artifact: Path,
    spec: BuildSpec,
    samples: list[Sample],
    r: dict[str, Any],
    end_to_end: Callable[[], Evaluation],
    first: Evaluation,
) -> None:
    """Engine-only figures on the first evaluation batch, held in memory, interleaved with `benchmark.repeats`
    end-to-end passes (the first is the inference stage's); async and the vendor tool on request."""
    inputs = [load_input(s, spec.input_hw, _reduced(cfg), spec.uint8_nhwc) for s in samples[: spec.batch]]
    batch = pad_batch(np.stack(inputs), spec)
    bench = cfg.benchmark
    rounds, passes = interleave(
        lambda: time_sync(session, batch, bench, cfg.progress), end_to_end, first, bench.repeats
    )
    r["benchmark"]["engine"], e2e = median_rounds(rounds, [p.figures() for p in passes])
    r["benchmark"]["end_to_end"] = e2e
    if any(p.dice != first.dice for p in passes):
        worst = max(float(np.max(np.abs(np.subtract(p.dice, first.dice)))) for p in passes)
        r["notes"].append(f"Dice differed between timing passes (largest per-image difference {worst:.2g})")
    r["benchmark"]["engine_async"] = time_async(session, batch, bench)
    if bench.vendor_tool:
        tool = engine.vendor_benchmark(artifact, spec, bench.vendor_seconds)
        r["benchmark"]["vendor"] = run_vendor_tool(*tool, timeout=bench.vendor_seconds * 6 + 120) if tool else None


def _load_model(model_cfg: DictConfig, r: dict[str, Any]) -> torch.nn.Module:
    """The configured weights, or seeded random ones for `model.checkpoint=random` (speed-only runs)."""
    checkpoint = model_cfg.checkpoint
    if not checkpoint:
        raise PipelineError(
            f"model={model_cfg.name} has no weights: pass model.checkpoint=<milesial-format .pth> "
            "(or model.checkpoint=random for a speed-only run)"
        )
    if checkpoint == RANDOM_WEIGHTS:
        torch.manual_seed(0)
        r["notes"].append("random weights (model.checkpoint=random): Dice not applicable")
        return for_deployment(build_unet(model_cfg).eval(), model_cfg)
    net, _ = load_unet(model_cfg, checkpoint)
    r["job"]["checkpoint_sha256"] = file_sha256(checkpoint)
    return for_deployment(net, model_cfg)


def _record_evaluation(r: dict[str, Any], ev: Evaluation, out_dir: Path, images: dict[str, Path]) -> None:
    scored = r["job"]["checkpoint"] != RANDOM_WEIGHTS  # Dice of random weights is no measurement
    r["metrics"] = {
        "dice": round(ev.mean_dice, 6) if scored else None,
        "dice_min": round(min(ev.dice), 6) if scored else None,
        "num_images": len(ev.dice),
    }
    r["benchmark"]["end_to_end"] = ev.figures()
    table = pd.DataFrame({"image_id": ev.ids, "dice": ev.dice, "image": [str(images[i]) for i in ev.ids]})
    write_atomic(out_dir / PER_IMAGE_FILE, table.to_csv(index=False, float_format="%.6f"))


def one_line(exc: BaseException) -> str:
    """A PipelineError's message, or the exception type and first line of anything unexpected."""
    if isinstance(exc, PipelineError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''} (unexpected; HYDRA_FULL_ERROR=1 shows the traceback)"


def completed_before(out_dir: Path, identity: str) -> dict[str, Any] | None:
    """The job dir's record if it says completed for the same config identity (resume skips the job)."""
    try:
        previous = json.loads((out_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(previous, dict) and previous.get("status") == "completed" and previous.get("identity") == identity:
        return previous
    return None


def run_job(
    cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None, reraise_unexpected: bool = False
) -> dict[str, Any]:
    """Run all stages and write out_dir/result.json, success or failure.

    Stage errors are recorded, not raised, so a sweep goes on; `reraise_unexpected` re-raises errors that
    are not PipelineErrors (after the record is written) for debugging with HYDRA_FULL_ERROR=1. A dir that
    already holds a completed record of the same config is skipped (resume) unless `force=true`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    record = JobRecord(cfg, list(overrides or []))
    previous = completed_before(out_dir, record.data["identity"])
    if previous is not None and not cfg.force:
        log.info("skipped: %s already holds a completed result for this config (force=true re-runs it)", out_dir)
        return previous
    write_json(out_dir / RESULT_FILE, record.data)  # a "running" record: a killed job still leaves a row
    try:
        with record.timed("total"):
            _run_stages(cfg, out_dir, record)
        if record.data["status"] == "running":
            record.data["status"] = "completed"
    except Exception as exc:  # every failure becomes a row, never a lost job
        record.data.update(status="failed", error=one_line(exc))
        if not isinstance(exc, PipelineError):
            record.data["traceback"] = traceback.format_exc()
        log.error(record.data["error"])
        if reraise_unexpected and not isinstance(exc, PipelineError):
            raise
    finally:
        record.data["finished_at"] = dt.datetime.now().isoformat(timespec="seconds")
        write_json(out_dir / RESULT_FILE, record.data)
    return record.data
