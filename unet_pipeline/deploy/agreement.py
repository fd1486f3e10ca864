"""Cross-engine agreement: one fixed batch through every engine x precision, compared with PyTorch fp32.

fp32 engines must match the reference within 1e-3 max abs logit and at most 0.01 % of pixels with another
argmax; lower precisions report their Dice difference. Engines are discovered from conf/engine/, so a new
engine is checked without touching this module."""

from __future__ import annotations

import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch

from unet_pipeline.config import PrecisionMode
from unet_pipeline.core import PipelineError, isa
from unet_pipeline.deploy.stages.export import export_graph
from unet_pipeline.engines import BuildSpec, Engine, OverflowChoice, Precision, with_overflow_fix
from unet_pipeline.metrics import dice_of_logits, predict_labels

FP32_MAX_ABS = 1e-3
FP32_MAX_FLIPPED = 1e-4  # share of pixels whose argmax differs


def engine_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in (files("unet_pipeline.conf") / "engine").iterdir()
        if p.name.endswith(".yaml")
    )


def instantiate_engine(name: str) -> Engine:
    """The engine as `engine=<name>` configures it, with its default settings."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(version_base="1.3", config_module="unet_pipeline.conf"):
        cfg = compose("pipeline", overrides=[f"engine={name}"])
    GlobalHydra.instance().clear()
    return hydra.utils.instantiate(cfg.engine)


def _row(engine: str, precision: str, **fields: Any) -> dict[str, Any]:
    return {
        "engine": engine,
        "precision": precision,
        "status": "ok",
        "max_abs_logit": None,
        "flipped_pixels": None,
        "dice": None,
        "dice_delta": None,
        "agrees": None,
        "reason": "",
        "overflow_fix": None,
        **fields,
    }


def _measured(
    engine: str,
    mode: str,
    logits: np.ndarray,
    reference: np.ndarray,
    masks: np.ndarray,
    fallback: str | None,
    overflow: OverflowChoice | None,
) -> dict[str, Any]:
    """One built precision's row: its logits against PyTorch fp32's, pixel by pixel and in Dice."""
    dice, ref_dice = float(dice_of_logits(logits, masks).mean()), float(dice_of_logits(reference, masks).mean())
    max_abs = float(np.abs(logits - reference).max())
    flipped = float((predict_labels(logits) != predict_labels(reference)).mean())
    return _row(
        engine,
        mode,
        max_abs_logit=max_abs,
        flipped_pixels=flipped,
        dice=dice,
        dice_delta=dice - ref_dice,
        agrees=(max_abs <= FP32_MAX_ABS and flipped <= FP32_MAX_FLIPPED) if mode == "force_float32" else None,
        reason=fallback or "",
        overflow_fix=overflow.setting if overflow else None,
    )


def compare_engines(
    net: torch.nn.Module,
    images: np.ndarray,
    masks: np.ndarray,
    calibration: list[np.ndarray],
    engines: list[str] | None = None,
    precisions: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows of (engine, precision, max abs logit diff, flipped pixels, Dice and its delta vs PyTorch fp32)."""
    net = net.eval()
    with torch.no_grad():
        reference = net(torch.from_numpy(images)).numpy()
    ref_dice = float(dice_of_logits(reference, masks).mean())
    rows = [_row("pytorch-eager", "force_float32", dice=ref_dice, dice_delta=0.0, reason="reference")]
    hw = images.shape[2:]
    host = isa.host()
    for name in engines or engine_names():
        engine = instantiate_engine(name)
        with tempfile.TemporaryDirectory() as tmp:
            graph: Path | None = None  # one export per engine: the graph does not depend on the precision
            by_build: dict[tuple[int | None, str], dict[str, Any]] = {}  # (bits, float type run) -> measured row
            for mode in precisions or [m.value for m in PrecisionMode]:
                spec = BuildSpec(Precision(mode), "static", len(images), None, hw, images.shape[1], "cpu")
                try:
                    engine.check(spec)
                except PipelineError as exc:
                    rows.append(_row(name, mode, status="unsupported", reason=str(exc)))
                    continue
                spec, overflow = with_overflow_fix(engine, spec, host)  # int8 as a job on this CPU builds it
                fallback = engine.precision_fallback(spec)
                if fallback and spec.precision.quant_bits is None:
                    rows.append(_row(name, mode, status="skipped", reason=fallback))
                    continue
                # int8 whose float remainder falls back to float32 computes what int8 + float32 computes
                build = (spec.precision.quant_bits, "float32" if fallback else spec.precision.float_type)
                if build in by_build:
                    same = by_build[build]
                    reason = f"{fallback or 'the same computation'} (the {same['precision']} build)"
                    rows.append({**same, "precision": mode, "reason": reason})
                    continue
                if graph is None:
                    graph = export_graph(net, engine.capabilities.export_format, spec, Path(tmp) / "export")
                calib = calibration if spec.precision.needs_calibration else None
                session = engine.load(engine.build(graph, spec, calib, Path(tmp) / mode), spec)
                logits = session.infer(images)
                rows.append(_measured(name, mode, logits, reference, masks, fallback, overflow))
                by_build[build] = rows[-1]
    return rows


def disagreements(rows: list[dict[str, Any]]) -> list[str]:
    """One line per fp32 engine outside the tolerance, naming engine and precision."""
    return [
        f"{r['engine']} {r['precision']}: max abs logit {r['max_abs_logit']:.2e} (limit {FP32_MAX_ABS:g}), "
        f"{r['flipped_pixels']:.4%} pixels flipped (limit {FP32_MAX_FLIPPED:.2%})"
        for r in rows
        if r["agrees"] is False
    ]


def fixed_batch(data_cfg, hw: tuple[int, int], num_images: int, num_calibration: int, prep=None):
    """The first `num_images` evaluation images (and masks) and calibration images from other cars, preprocessed
    as `prep` (the model's data.Preprocessing; default OpenCV bicubic)."""
    from unet_pipeline.data import Preprocessing, list_samples, load_input, load_pair, select_calibration, select_eval

    prep = prep or Preprocessing()
    samples = list_samples(data_cfg.root, data_cfg)
    evaluation = select_eval(samples, data_cfg)[:num_images]
    pairs = [load_pair(s, hw, prep) for s in evaluation]
    calib, _ = select_calibration(samples, evaluation, num_calibration, seed=0)
    inputs = [load_input(s, hw, prep) for s in calib]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), inputs
