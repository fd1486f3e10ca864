"""One job: the stages in order, and a result.json record written whatever happens.

Why a record per job: Hydra skips `on_multirun_end` when a job raises, and other launchers run jobs
elsewhere; tables are therefore always aggregated from these files on disk.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from unet_pipeline.config import check_ranges
from unet_pipeline.core import BudgetNotMet, PipelineError, file_sha256, isa, one_line, write_json
from unet_pipeline.data import InputCache
from unet_pipeline.deploy.artifacts import export_and_build
from unet_pipeline.deploy.keys import RANDOM_WEIGHTS
from unet_pipeline.deploy.spec import (
    build_spec,
    caches_inputs,
    for_cpu,
    instantiate_engine,
    preprocessing,
    skips_bad_samples,
)
from unet_pipeline.deploy.stages.benchmark import benchmark_job, device_lock, gpu_name
from unet_pipeline.deploy.stages.evaluate import Evaluation, evaluate, pad_batch
from unet_pipeline.deploy.stages.feed import check_settings as check_feed_settings
from unet_pipeline.deploy.stages.image_sets import Selection, select_evaluation, select_quantizer_images
from unet_pipeline.deploy.stages.save import save_outputs
from unet_pipeline.deploy.stages.verify import refuse_unrunnable_precision, verify_compiled
from unet_pipeline.engines import BuildSpec, Engine, Session
from unet_pipeline.metrics import BlockCounts
from unet_pipeline.model import build_unet, for_deployment, load_unet
from unet_pipeline.record import RESULT_FILE, JobRecord, completed_before, write_per_image

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"


def _run_stages(cfg: DictConfig, out_dir: Path, record: JobRecord) -> None:
    """Checks, then data, weights, artifact, session, and the measurements under the device lock."""
    engine, spec, int8_kind = prepare(cfg, record)
    if cfg.dry_run:
        _write_plan(cfg, engine, spec, out_dir, record)
        return
    engine.require_runtime()
    refuse_unrunnable_precision(engine, spec, cfg.strict_precision)
    with record.timed("data"):
        selected = _select(cfg, spec, record)
    with record.timed("load_model"):
        net = load_model(cfg.model, record)
    artifact = export_and_build(cfg, engine, spec, net, selected, out_dir, record, int8_kind)
    with record.timed("load_engine"):
        session = _load_session(cfg, engine, artifact, spec, record)
    with device_lock(cfg.device.name, cfg.benchmark.lock_dir) as waited:
        record.benchmark.lock_wait_seconds = round(waited, 3)
        _measure(cfg, engine, session, artifact, spec, selected, out_dir, record)


def prepare(cfg: DictConfig, record: JobRecord) -> tuple[Engine, BuildSpec, str]:
    """Everything refused before any work: ranges, the engine and what it can run, the int8 overflow fix for this
    CPU, the feed's settings; (engine, the request as the engine will build it, this CPU's int8 class)."""
    check_ranges(cfg)
    engine = instantiate_engine(cfg)
    record.job.engine, record.job.engine_version = engine.name, engine.version()
    record.engine_settings = engine.settings()
    spec = build_spec(cfg)
    engine.check(spec)
    host_isa = isa.host()
    spec, overflow = for_cpu(engine, spec, host_isa)
    if overflow is not None:
        record.quantization = {"overflow_fix": overflow}
    check_feed_settings(cfg.data.workers, cfg.data.prefetch_batches)
    return engine, spec, host_isa.kind


def _select(cfg: DictConfig, spec: BuildSpec, record: JobRecord) -> Selection:
    """The job's images; the record says which evaluation data it had even if choosing calibration images fails."""
    selected = select_evaluation(cfg, spec)
    record.data.update(selected.facts)
    selected = select_quantizer_images(cfg, spec, selected)
    record.data.update(selected.facts)
    return selected


def _load_session(cfg: DictConfig, engine: Engine, artifact: Path, spec: BuildSpec, record: JobRecord) -> Session:
    """The artifact loaded and warmed up (lazy initialisation is not part of end to end), and what it really runs."""
    session = engine.load(artifact, spec)
    session.infer(pad_batch(spec.zeros(spec.batch), spec))
    record.compiled = session.describe()
    record.notes += verify_compiled(spec, record.compiled, cfg.strict_precision, engine.precision_fallback(spec))
    return session


def _measure(
    cfg: DictConfig,
    engine: Engine,
    session: Session,
    artifact: Path,
    spec: BuildSpec,
    selected: Selection,
    out_dir: Path,
    record: JobRecord,
) -> None:
    """Inference over every evaluation image (Dice and the end-to-end figures), the benchmark, the pictures."""
    samples = selected.evaluation
    summary = BlockCounts(spec.input_hw)  # kept beside each mask, for full-resolution Dice
    inputs = InputCache(cfg.cache.dir, spec.input_hw, preprocessing(cfg), summary) if caches_inputs(cfg) else None

    def end_to_end() -> Evaluation:
        return evaluate(
            session,
            samples,
            spec,
            cfg.progress,
            skip_bad=skips_bad_samples(cfg),
            prep=preprocessing(cfg),
            prefetch=cfg.data.prefetch_batches,
            input_cache=inputs,
            workers=cfg.data.workers,
            full_resolution=cfg.metrics.full_resolution,
        )

    with record.timed("inference"):
        evaluation = end_to_end()
    record.add_skipped("evaluation", evaluation.skipped)
    if not evaluation.dice:
        raise PipelineError("every evaluation image was skipped as bad (data.on_bad_sample=skip); fix the dataset")
    record.add_evaluation(evaluation, evaluation.figures(), scored=cfg.model.checkpoint != RANDOM_WEIGHTS)
    write_per_image(out_dir, evaluation, {s.id: s.image for s in samples})
    if cfg.benchmark.enabled:
        with record.timed("benchmark"):
            benchmark_job(cfg, engine, session, artifact, spec, samples, record, end_to_end, evaluation)
    record.benchmark.end_to_end.input_cache = inputs.record() if inputs else None
    if cfg.save.masks or cfg.save.overlays:
        with record.timed("save"):
            dice = dict(zip(evaluation.ids, evaluation.dice, strict=True))
            saved = save_outputs(
                session, samples, dice, spec, out_dir, cfg.save.masks, cfg.save.overlays, preprocessing(cfg)
            )
            record.saved = {"masks": saved.masks, "overlays": saved.overlays, "predictions": saved.predictions}


def _write_plan(cfg: DictConfig, engine: Engine, spec: BuildSpec, out_dir: Path, record: JobRecord) -> None:
    """dry_run=true: everything the job would build from, reviewed before spending device time."""
    selected = _select(cfg, spec, record)
    eval_samples, calib_samples = selected.evaluation, selected.calibration
    plan = {
        "job": record.to_dict()["job"],
        "engine": engine.plan(spec).to_dict(),
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
    record.status = "planned"
    record.notes.append(f"dry run: plan written to {PLAN_FILE}, nothing built or run")


def load_model(model_cfg: DictConfig, record: JobRecord) -> torch.nn.Module:
    """The configured weights, or seeded random ones for `model.checkpoint=random` (speed-only runs)."""
    checkpoint = model_cfg.checkpoint
    if not checkpoint:
        raise PipelineError(
            f"model={model_cfg.name} has no weights: pass model.checkpoint=<milesial-format .pth> "
            "(or model.checkpoint=random for a speed-only run)"
        )
    if checkpoint == RANDOM_WEIGHTS:
        torch.manual_seed(0)
        record.notes.append("random weights (model.checkpoint=random): Dice not applicable")
        return for_deployment(build_unet(model_cfg).eval(), model_cfg)
    net, _ = load_unet(model_cfg, checkpoint)
    record.job.checkpoint_sha256 = file_sha256(checkpoint)
    return for_deployment(net, model_cfg)


def run_job(
    cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None, reraise_unexpected: bool = False
) -> dict[str, Any]:
    """Run all stages and write out_dir/result.json, success or failure.

    Stage errors are recorded, not raised, so a sweep goes on; `reraise_unexpected` re-raises errors that
    are not PipelineErrors (after the record is written) for debugging with HYDRA_FULL_ERROR=1. A dir that
    already holds a completed record of the same config is skipped (resume) unless `force=true`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    record = JobRecord.start(cfg, list(overrides or []))
    if cfg.device.kind == "cuda":
        record.machine["gpu"] = gpu_name()
    previous = completed_before(out_dir, record.identity)
    if previous is not None and not cfg.force:
        log.info("skipped: %s already holds a completed result for this config (force=true re-runs it)", out_dir)
        return previous
    write_json(out_dir / RESULT_FILE, record.to_dict())  # a "running" record: a killed job still leaves a row
    try:
        with record.timed("total"):
            _run_stages(cfg, out_dir, record)
        if record.status == "running":
            record.status = "completed"
    except Exception as exc:  # every failure becomes a row, never a lost job
        record.status, record.error = "failed", one_line(exc)
        if isinstance(exc, BudgetNotMet):  # the search's trials outlive its failure
            record.quantization = {**(record.quantization or {}), "accuracy_control": exc.accuracy_control}
        if not isinstance(exc, PipelineError):
            record.traceback = traceback.format_exc()
        log.error(record.error)
        if reraise_unexpected and not isinstance(exc, PipelineError):
            raise
    finally:
        record.finished_at = dt.datetime.now().isoformat(timespec="seconds")
        write_json(out_dir / RESULT_FILE, record.to_dict())
    return record.to_dict()
