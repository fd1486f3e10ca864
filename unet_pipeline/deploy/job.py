"""One job: the stages in order, and a result.json record written whatever happens.

Why a record per job: Hydra skips `on_multirun_end` when a job raises, and other launchers run jobs
elsewhere; tables are therefore always aggregated from these files on disk."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from unet_pipeline.config import check_ranges
from unet_pipeline.core import BudgetNotMet, PipelineError, file_sha256, isa, one_line, write_json
from unet_pipeline.data import InputCache, Preprocessing, Sample, load_input
from unet_pipeline.deploy.cache import ArtifactCache, NoCache
from unet_pipeline.deploy.keys import engine_parts, export_parts
from unet_pipeline.deploy.spec import build_spec, for_cpu
from unet_pipeline.deploy.stages.benchmark import (
    benchmark_notes,
    device_lock,
    interleave,
    median_rounds,
    run_vendor_tool,
    time_async,
    time_sync,
)
from unet_pipeline.deploy.stages.calibrate import load_quantizer_data
from unet_pipeline.deploy.stages.evaluate import Evaluation, evaluate, pad_batch
from unet_pipeline.deploy.stages.export import export_graph
from unet_pipeline.deploy.stages.feed import check_settings as check_feed_settings
from unet_pipeline.deploy.stages.quantize import ValidationSet, build_quantized, read_quantization_file
from unet_pipeline.deploy.stages.save import save_outputs
from unet_pipeline.deploy.stages.select import Selection, select_data
from unet_pipeline.deploy.stages.verify import refuse_unrunnable_precision, verify_compiled
from unet_pipeline.engines import BuildSpec, Engine
from unet_pipeline.model import build_unet, for_deployment, load_unet
from unet_pipeline.record import RESULT_FILE, JobRecord, completed_before, write_per_image

__all__ = ["RESULT_FILE", "JobRecord", "build_spec", "run_job"]

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
RANDOM_WEIGHTS = "random"


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


def _write_plan(cfg: DictConfig, engine: Engine, spec: BuildSpec, out_dir: Path, record: JobRecord) -> None:
    """dry_run=true: everything the job would build from, reviewed before spending device time."""
    selected = select_data(cfg, spec, record.data)
    eval_samples, calib_samples = selected.evaluation, selected.calibration
    plan = {
        "job": record.to_dict()["job"],
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
    record.status = "planned"
    record.notes.append(f"dry run: plan written to {PLAN_FILE}, nothing built or run")


def _run_stages(cfg: DictConfig, out_dir: Path, record: JobRecord) -> None:
    check_ranges(cfg)
    engine = _engine(cfg)
    record.job.engine, record.job.engine_version = engine.name, engine.version()
    record.engine_settings = engine.settings()
    spec = build_spec(cfg)
    engine.check(spec)
    host_isa = isa.host()
    spec, overflow = for_cpu(engine, spec, host_isa)
    if overflow is not None:
        record.quantization = {"overflow_fix": overflow}
    check_feed_settings(cfg.data.workers, cfg.data.prefetch_batches)
    if cfg.dry_run:
        _write_plan(cfg, engine, spec, out_dir, record)
        return
    engine.require_runtime()
    refuse_unrunnable_precision(engine, spec, cfg.strict_precision)

    with record.timed("data"):
        selected = select_data(cfg, spec, record.data)
        eval_samples = selected.evaluation

    with record.timed("load_model"):
        net = _load_model(cfg.model, record)
    artifact = _export_and_build(cfg, engine, spec, net, selected, out_dir, record, host_isa.kind)
    with record.timed("load_engine"):
        session = engine.load(artifact, spec)
        session.infer(pad_batch(spec.zeros(spec.batch), spec))  # warm-up: lazy init is not part of e2e
        record.compiled = session.describe()
        record.notes += verify_compiled(spec, record.compiled, cfg.strict_precision, engine.precision_fallback(spec))
    with device_lock(cfg.device.name, cfg.benchmark.lock_dir) as waited:
        record.benchmark.lock_wait_seconds = round(waited, 3)
        inputs = InputCache(cfg.cache.dir, spec.input_hw, _prep(cfg)) if _cache_inputs(cfg) else None

        def end_to_end() -> Evaluation:
            return evaluate(
                session,
                eval_samples,
                spec,
                cfg.progress,
                skip_bad=_skip_bad(cfg),
                prep=_prep(cfg),
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
        write_per_image(out_dir, evaluation, {s.id: s.image for s in eval_samples})
        if cfg.benchmark.enabled:
            with record.timed("benchmark"):
                _benchmark(cfg, engine, session, artifact, spec, eval_samples, record, end_to_end, evaluation)
        record.benchmark.end_to_end["input_cache"] = inputs.record() if inputs else None
        if cfg.save.masks or cfg.save.overlays:
            with record.timed("save"):
                dice = dict(zip(evaluation.ids, evaluation.dice, strict=True))
                saved = save_outputs(
                    session, eval_samples, dice, spec, out_dir, cfg.save.masks, cfg.save.overlays, _prep(cfg)
                )
                record.saved = {"masks": saved.masks, "overlays": saved.overlays, "predictions": saved.predictions}


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
    cache = ArtifactCache(cfg.cache.dir) if cfg.cache.enabled else NoCache(out_dir)
    sha = record.job.checkpoint_sha256
    weights = f"sha256:{sha}" if sha else f"{RANDOM_WEIGHTS}:seed0"
    export_format = engine.capabilities.export_format
    with record.timed("export"):
        exported = cache.get_or_build(
            "export",
            export_parts(cfg.model, weights, spec, export_format),
            lambda out: export_graph(net, export_format, spec, out),
        )
    record.cache.export = exported.record()

    def build(out: Path) -> Path:
        if selected.calibration is None:
            return engine.build(exported.artifact, spec, None, out)
        with record.timed("calibration_data"):
            skipped: list[dict[str, str]] = []
            options = (spec, cfg.progress, _skip_bad(cfg), skipped, _prep(cfg))
            calibration = load_quantizer_data(selected.calibration, *options)
            validation = None
            if selected.validation is not None:
                validation = ValidationSet(load_quantizer_data(selected.validation, *options, masks=True), spec)
            record.add_skipped("calibration", skipped)
        trials = cfg.calibration.search_trials
        return build_quantized(engine, exported.artifact, spec, calibration, validation, out, trials)

    parts = engine_parts(
        exported.key, engine, spec, cfg.calibration, selected.calibration, selected.validation, int8_kind, _prep(cfg)
    )
    with record.timed("build"):
        built = cache.get_or_build("engine", parts, build)
    record.cache.engine = built.record()
    record.add_quantization(read_quantization_file(built.artifact))
    for stage, result in (("export", exported), ("engine", built)):
        if result.rebuilt_corrupt:
            record.notes.append(f"cache: the {stage} entry failed its integrity check and was rebuilt")
    return built.artifact


def _skip_bad(cfg: DictConfig) -> bool:
    return cfg.data.on_bad_sample.value == "skip"


def _cache_inputs(cfg: DictConfig) -> bool:
    """data.cache_inputs=true shares decoded inputs through cache.dir (so not with cache.enabled=false)."""
    return bool(cfg.data.cache_inputs and cfg.cache.enabled)


def _prep(cfg: DictConfig) -> Preprocessing:
    """model.resize and data.decode: calibration, evaluation, the benchmark batch and the pictures alike."""
    return Preprocessing.of(cfg.model, cfg.data)


def _benchmark(
    cfg: DictConfig,
    engine: Engine,
    session,
    artifact: Path,
    spec: BuildSpec,
    samples: list[Sample],
    record: JobRecord,
    end_to_end: Callable[[], Evaluation],
    first: Evaluation,
) -> None:
    """Engine-only figures on the first evaluation batch, held in memory, interleaved with `benchmark.repeats`
    end-to-end passes (the first is the inference stage's); async and the vendor tool on request."""
    inputs = [load_input(s, spec.input_hw, _prep(cfg), spec.uint8_nhwc) for s in samples[: spec.batch]]
    batch = pad_batch(np.stack(inputs), spec)
    bench = cfg.benchmark
    rounds, passes = interleave(
        lambda: time_sync(session, batch, bench, cfg.progress), end_to_end, first, bench.repeats
    )
    figures = record.benchmark
    figures.engine, figures.end_to_end = median_rounds(rounds, [p.figures() for p in passes])
    if any(p.dice != first.dice for p in passes):
        worst = max(float(np.max(np.abs(np.subtract(p.dice, first.dice)))) for p in passes)
        record.notes.append(f"Dice differed between timing passes (largest per-image difference {worst:.2g})")
    figures.engine_async = time_async(session, batch, bench, figures.engine["latency_ms"]["p50"], cfg.progress)
    record.notes += benchmark_notes(rounds, figures.engine_async, bench)
    if bench.vendor_tool:
        tool = engine.vendor_benchmark(artifact, spec, bench.vendor_seconds)
        figures.vendor = run_vendor_tool(*tool, timeout=bench.vendor_seconds * 6 + 120) if tool else None
        if tool is None:
            record.notes.append(f"benchmark.vendor_tool: engine={engine.name} has no vendor benchmark tool")
        elif figures.vendor.get("error"):
            record.notes.append(f"benchmark.vendor_tool: {figures.vendor['error']}")


def _load_model(model_cfg: DictConfig, record: JobRecord) -> torch.nn.Module:
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
