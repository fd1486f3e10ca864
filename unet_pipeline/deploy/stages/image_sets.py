"""Which images each stage uses: evaluation, calibration (quantized precisions), validation (max_dice_drop).

Calibration and validation images always come from cars outside the evaluation set where the data allows it;
where it does not, the job warns and its record says so (`calibration_overlaps_eval`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from unet_pipeline.core import PipelineError
from unet_pipeline.data import (
    Sample,
    ensure_configured,
    list_samples,
    select_calibration,
    select_eval,
    select_validation,
)
from unet_pipeline.engines import BuildSpec

log = logging.getLogger(__name__)


@dataclass
class Selection:
    """The images of one job, and what result.json -> data says of the choice."""

    evaluation: list[Sample]
    facts: dict[str, Any]
    pool: list[Sample]  # where calibration and validation images are drawn from
    calibration: list[Sample] | None = None
    validation: list[Sample] | None = None


def select_evaluation(cfg: DictConfig, spec: BuildSpec) -> Selection:
    """The evaluation images (the demo set generated first where the config owns one)."""
    generated = ensure_configured(cfg.data)
    samples = list_samples(cfg.data.root, cfg.data)
    eval_samples = select_eval(samples, cfg.data)
    if len(eval_samples) < spec.batch:
        raise PipelineError(
            f"batch={spec.batch} is larger than the {len(eval_samples)} evaluation images; "
            "lower batch or raise data.num_images"
        )
    facts = {
        "root": cfg.data.root,
        "split": str(cfg.data.split.value),
        "generated": generated,
        "eval_cars": len({s.car for s in eval_samples}),
    }
    return Selection(eval_samples, facts, samples)


def select_quantizer_images(cfg: DictConfig, spec: BuildSpec, selected: Selection) -> Selection:
    """`selected` with calibration images (quantized precisions) and, for calibration.max_dice_drop, validation
    images, from other cars than the evaluation's where the data allows it."""
    if not spec.precision.needs_calibration:
        return selected
    calibration = cfg.calibration
    pool = (
        selected.pool
        if calibration.root == cfg.data.root
        else list_samples(calibration.root, cfg.data, key="calibration.root")
    )
    calib_samples, overlaps = select_calibration(pool, selected.evaluation, calibration.num_samples, calibration.seed)
    facts = {
        "calibration_root": calibration.root,
        "calibration_images": len(calib_samples),
        "calibration_overlaps_eval": overlaps,
        "calibration_ids": [c.id for c in calib_samples],
    }
    if overlaps:
        log.warning(
            "calibration images come from cars in the evaluation set "
            "(calibration_overlaps_eval: true); use data.split=val or another calibration.root"
        )
    validation = None
    if spec.quant.max_dice_drop is not None:
        validation = select_validation(
            pool, selected.evaluation, calib_samples, calibration.validation_samples, calibration.seed
        )
        facts["validation_ids"] = [v.id for v in validation]
    return Selection(selected.evaluation, {**selected.facts, **facts}, pool, calib_samples, validation)
