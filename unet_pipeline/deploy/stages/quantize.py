"""Quantized builds: plain calibration, or the fastest int8 model within a Dice budget (accuracy-aware).

`calibration.max_dice_drop` runs the engine's own accuracy-aware quantizer where it has one (OpenVINO:
NNCF's `quantize_with_accuracy_control`, which bounds the mean); other engines, and a budget on the worst
single image (`drop_metric=worst_image`), get `search_within_drop`, a documented search
that keeps more and more compute layers in float until the drop on held-apart validation images is
within budget. Either way `quantization.json` beside the artifact records what was tried and which layers
stayed in float, so a cache hit reports it as well as the build that made it."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from unet_pipeline.core import PipelineError
from unet_pipeline.deploy.stages.evaluate import pad_batch
from unet_pipeline.engines import BuildSpec, Engine, Precision, QuantOptions, Session, budget_error, resolve_layers
from unet_pipeline.metrics import dice_of_logits

RECORD = "quantization.json"


@dataclass
class ValidationSet:
    """Held-apart (input, mask) pairs: not evaluation images, not calibration images."""

    items: list[tuple[np.ndarray, np.ndarray]]
    spec: BuildSpec

    def dice(self, session: Session, items: list[tuple[np.ndarray, np.ndarray]] | None = None) -> list[float]:
        """Per-image Dice, one image per inference (padded to the artifact's batch)."""
        scores = []
        for x, mask in self.items if items is None else items:
            logits = session.infer(pad_batch(x[None], self.spec))[:1]
            scores.append(float(dice_of_logits(logits, mask[None])[0]))
        return scores


def search_order(quant: QuantOptions, num_layers: int) -> list[QuantOptions]:
    """Configurations from most to least int8, so the first within budget is the fastest.

    1. the configured options; 2. per-channel weights if per-tensor was asked (as fast, usually closer);
    3. then compute layers kept in float one more at a time, alternating from the output end and the input
    end (last, first, second to last, second, ...), on top of any `keep_float` already asked: the layers
    next to the image and to the logits are the usual int8 casualties in segmentation nets.
    """
    order = [quant]
    if quant.weights == "per_tensor":
        quant = replace(quant, weights="per_channel")
        order.append(quant)
    ends = [p for k in range(num_layers) for p in (num_layers - 1 - k, k)]  # last, first, -2, 1, ...
    kept = list(quant.keep_float)
    for position in dict.fromkeys(ends):
        if position in {_position(entry, num_layers) for entry in kept}:
            continue
        kept.append(str(position))
        order.append(replace(quant, keep_float=tuple(kept)))
    return order


def _position(entry: str, num_layers: int) -> int | None:
    """A keep_float entry as a non-negative position (None for a layer name)."""
    entry = {"first": "0", "last": "-1"}.get(entry, entry)
    if not entry.lstrip("-").isdigit():
        return None
    return int(entry) % num_layers if num_layers else None


def search_within_drop(
    engine: Engine,
    graph: Path,
    spec: BuildSpec,
    calibration: list[np.ndarray],
    validation: ValidationSet,
    out_dir: Path,
    trials: int,
) -> tuple[Path, dict[str, Any]]:
    """Build `search_order`'s configurations in turn; keep the first whose validation Dice drop is in budget."""
    budget = spec.quant.max_dice_drop
    assert budget is not None
    float_spec = replace(spec, precision=Precision("force_float32"))
    reference_artifact = engine.build(graph, float_spec, None, out_dir / "reference")
    reference_scores = validation.dice(engine.load(reference_artifact, float_spec))
    reference = _mean(reference_scores)
    shutil.rmtree(out_dir / "reference")
    layers = engine.compute_layers(graph, spec) if engine.capabilities.keep_float else []
    tried: list[dict[str, Any]] = []
    searched = {  # what the record says, whether the search succeeds or fails
        "tool": "search (calibration.max_dice_drop, stages/quantize.py)",
        "max_dice_drop": budget,
        "drop_metric": spec.quant.drop_metric,
        "validation_images": len(validation.items),
        "reference_dice": reference,
    }
    for index, quant in enumerate(search_order(spec.quant, len(layers))[: max(1, trials)]):
        trial = replace(spec, quant=quant)
        trial_dir = out_dir / f"trial{index}"
        artifact = engine.build(graph, trial, calibration, trial_dir)
        scores = validation.dice(engine.load(artifact, trial))
        dice, drop = _mean(scores), dice_drop(reference_scores, scores, spec.quant.drop_metric)
        tried.append(
            {
                "weights": quant.weights,
                "keep_float": resolve_layers(layers, quant.keep_float),
                "dice": dice,
                "drop": drop,
            }
        )
        if drop <= budget:
            for item in trial_dir.iterdir():
                shutil.move(str(item), out_dir / item.name)
            trial_dir.rmdir()
            kept = tried[-1]["keep_float"]
            record = {
                **searched,
                "final_dice": dice,
                "final_drop": drop,
                "kept_float": kept,
                "kept_float_positions": [layers.index(name) for name in kept],
                "trials": tried,
            }
            return out_dir / artifact.name, record
        shutil.rmtree(trial_dir)
    failed = {**searched, "trials": tried}  # a failed job's record still says how close each trial came
    raise budget_error(budget, min(t["drop"] for t in tried), len(tried), spec.quant.drop_metric, failed)


def dice_drop(reference: list[float], scores: list[float], metric: str) -> float:
    """How much Dice int8 loses against float on the same images: of the mean, or of the worst image."""
    if metric == "worst_image":
        return max(r - s for r, s in zip(reference, scores, strict=True))
    return _mean(reference) - _mean(scores)


def build_quantized(
    engine: Engine,
    graph: Path,
    spec: BuildSpec,
    calibration: list[np.ndarray],
    validation: ValidationSet | None,
    out_dir: Path,
    trials: int,
) -> Path:
    """An int8 artifact as `spec.quant` asks, with `quantization.json` beside it."""
    if spec.quant.max_dice_drop is None:
        artifact, record = engine.build(graph, spec, calibration, out_dir), {}
    elif validation is None or not validation.items:
        raise PipelineError("calibration.max_dice_drop needs validation images: set calibration.validation_samples > 0")
    elif engine.capabilities.native_accuracy_control and spec.quant.drop_metric == "mean":
        artifact, record = engine.build_within_drop(graph, spec, calibration, validation, out_dir)
    else:
        artifact, record = search_within_drop(engine, graph, spec, calibration, validation, out_dir, trials)
    options = {k: v for k, v in vars(spec.quant).items() if k != "keep_float"}
    payload = {
        "options": {**options, "keep_float": list(spec.quant.keep_float)},
        "keep_float_layers": resolve_layers(engine.compute_layers(graph, spec), spec.quant.keep_float)
        if spec.quant.keep_float
        else [],
        "accuracy_control": record or None,
    }
    (artifact.parent / RECORD).write_text(json.dumps(payload, indent=2))
    return artifact


def read_quantization_file(artifact: Path) -> dict[str, Any] | None:
    """The artifact's quantization record, if it has one."""
    path = artifact.parent / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _mean(scores: list[float]) -> float:
    return float(np.mean(scores))
