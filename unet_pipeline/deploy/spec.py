"""The engine request a config implies: `BuildSpec`, with its batch and calibration values checked.

Separate from job.py so that everything an engine is asked for is read from the config in one place."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from unet_pipeline.core import Int8Isa, PipelineError
from unet_pipeline.data import Preprocessing, input_hw
from unet_pipeline.engines import BuildSpec, Engine, Precision, QuantOptions, with_overflow_fix


def build_spec(cfg: DictConfig) -> BuildSpec:
    """The engine request implied by the config, with the batch checked against the shape."""
    batch, shape = cfg.batch, cfg.shape
    if batch <= 0:
        raise PipelineError(f"batch={batch} must be a positive integer")
    batch_range = None
    if shape.mode == "dynamic":
        batch_range = (shape.batch_min, shape.batch_max)
        if not 1 <= shape.batch_min <= shape.batch_max:
            raise PipelineError(
                f"shape.batch_min={shape.batch_min} / shape.batch_max={shape.batch_max} must satisfy 1 <= min <= max"
            )
        if not shape.batch_min <= batch <= shape.batch_max:
            raise PipelineError(
                f"batch={batch} is outside the dynamic range {shape.batch_min}..{shape.batch_max}; "
                "change batch or shape.batch_min/shape.batch_max"
            )
    return BuildSpec(
        precision=Precision(str(cfg.precision.mode.value)),
        shape=str(shape.mode.value),
        batch=batch,
        batch_range=batch_range,
        input_hw=input_hw(cfg.model, cfg.data),
        channels=cfg.model.n_channels,
        device=cfg.device.kind,
        input_format=str(cfg.model.input_format.value),
        quant=quant_options(cfg.calibration),
    )


def quant_options(calibration: DictConfig) -> QuantOptions:
    """The engine-facing part of the `calibration` group."""
    drop = calibration.max_dice_drop
    if drop is not None and not 0 <= drop < 1:
        raise PipelineError(f"calibration.max_dice_drop={drop} must be in [0, 1) (an absolute Dice drop, e.g. 0.001)")
    if not 0 < calibration.percentile <= 100:
        raise PipelineError(f"calibration.percentile={calibration.percentile} must be in (0, 100]")
    return QuantOptions(
        method=str(calibration.method.value),
        percentile=float(calibration.percentile),
        weights=str(calibration.weights.value),
        activations=str(calibration.activations.value),
        keep_float=tuple(str(x) for x in calibration.keep_float),
        max_dice_drop=None if drop is None else float(drop),
        drop_metric=str(calibration.drop_metric.value),
        overflow_fix=str(calibration.overflow_fix.value),
        bias_correction=str(calibration.bias_correction.value),
    )


def for_cpu(engine: Engine, spec: BuildSpec, isa: Int8Isa) -> tuple[BuildSpec, dict[str, Any] | None]:
    """`spec` with `calibration.overflow_fix` resolved for the CPU class `isa`, and the record of that choice
    (result.json -> quantization.overflow_fix: what was asked, what was chosen and why); None for float."""
    requested = spec.quant.overflow_fix
    spec, choice = with_overflow_fix(engine, spec, isa)
    if choice is None:
        return spec, None
    return spec, {
        "requested": requested,
        "chosen": choice.setting,
        "why": choice.why,
        "runs_on": spec.device,  # cpu: the host's int8 instructions below decide; cuda / mlu: they do not apply
        "cpu": {"int8_kind": isa.kind, "saturates": isa.saturates, "flags": list(isa.flags)},
    }


def preprocessing(cfg: DictConfig) -> Preprocessing:
    """model.resize and data.decode: calibration, evaluation, the benchmark batch and the pictures alike."""
    return Preprocessing.of(cfg.model, cfg.data)


def skips_bad_samples(cfg: DictConfig) -> bool:
    """data.on_bad_sample=skip: a bad image is counted and listed, not fatal."""
    return cfg.data.on_bad_sample.value == "skip"


def caches_inputs(cfg: DictConfig) -> bool:
    """data.cache_inputs=true shares decoded inputs through cache.dir (so not with cache.enabled=false)."""
    return bool(cfg.data.cache_inputs and cfg.cache.enabled)


def instantiate_engine(cfg: DictConfig) -> Engine:
    """The configured engine; a missing library is a one-line error naming it."""
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
