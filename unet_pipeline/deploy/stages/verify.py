"""Build-stage policy: what the engine will really compile, checked before and after `Engine.build`."""

from __future__ import annotations

import logging
from typing import Any

from unet_pipeline.core import PipelineError
from unet_pipeline.engines import BuildSpec, Engine

log = logging.getLogger(__name__)


def refuse_unrunnable_precision(engine: Engine, spec: BuildSpec, strict: bool) -> None:
    """Before any work: refuse (strict) a float type the device would not really run, else warn.

    The headline precision must be real: `force_float16` that would run float32 fails when strict. For
    mixed modes the quantized part is the headline; the float remainder running wider is warned about
    here and noted on the row by `verify_compiled`.
    """
    fallback = engine.precision_fallback(spec)
    if fallback is None:
        return
    if spec.precision.quant_bits is None and strict:
        raise PipelineError(
            f"precision={spec.precision.mode}: {fallback}; choose a precision this device runs "
            "or pass strict_precision=false to run it anyway and mark the row"
        )
    log.warning("precision=%s: %s", spec.precision.mode, fallback)


def verify_compiled(spec: BuildSpec, compiled: dict[str, Any], strict: bool, reason: str | None = None) -> list[str]:
    """After loading: the artifact must run what was asked, or the row says otherwise (with the engine's
    `precision_fallback` reason where it gave one)."""
    notes = []
    share = compiled.get("quantized_layer_share", "absent")
    if spec.precision.quant_bits is not None and share is None:
        notes.append("the engine cannot report per-layer precision; int8 layers not verified")
    elif spec.precision.quant_bits is not None and not share:
        raise PipelineError(
            f"precision={spec.precision.mode} asked for int{spec.precision.quant_bits} but the compiled "
            "model has no quantized layers; this is an engine bug, please report it"
        )
    ran = compiled.get("inference_precision")
    if ran and ran != spec.precision.float_type:
        why = reason or "device lacks it"
        message = f"float part compiled as {ran}, not the requested {spec.precision.float_type} ({why})"
        if spec.precision.quant_bits is None and strict:
            raise PipelineError(f"precision={spec.precision.mode}: {message} (strict_precision=true)")
        notes.append(message)
    return notes
