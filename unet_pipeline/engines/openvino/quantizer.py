"""NNCF for OpenVINO: our calibration settings mapped to NNCF's (range estimator, preset, overflow fix, bias
correction), plain post-training quantization, and NNCF's accuracy control within `calibration.max_dice_drop`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unet_pipeline.core import PipelineError, package_version
from unet_pipeline.engines.base import Validator, budget_error
from unet_pipeline.engines.spec import BuildSpec, QuantOptions, resolve_layers, resolved_overflow_fix

# a model's Dice on the validation images, compiled with its own float type, or with this compile config
Score = Callable[..., float]

GRAPH_COMPUTE_OPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}  # ov.Model op types
# calibration.method -> NNCF activation range estimator (None: NNCF's default, MEAN_MINMAX)
RANGE_ESTIMATORS = {"default": None, "minmax": "MINMAX", "mean_minmax": "MEAN_MINMAX", "histogram": "HISTOGRAM"}
# calibration.overflow_fix -> nncf OverflowFix member (7-bit weights: in every layer, the first only, none)
OVERFLOW_FIXES = {"enable": "ENABLE", "first_layer": "FIRST_LAYER", "disable": "DISABLE"}


def _range_estimator(quant: QuantOptions):
    """NNCF activation range estimator for calibration.method (None: NNCF's default)."""
    from nncf.quantization import range_estimator as re_

    if quant.method == "percentile":
        outliers = 1.0 - quant.percentile / 100.0
        bound = re_.StatisticsCollectorParameters(
            statistics_type=re_.StatisticsType.QUANTILE,
            aggregator_type=re_.AggregatorType.MEAN,
            quantile_outlier_prob=outliers,
        )
        return re_.RangeEstimatorParameters(min=bound, max=bound)
    name = RANGE_ESTIMATORS[quant.method]
    return getattr(re_.RangeEstimatorParametersSet, name) if name else re_.RangeEstimatorParameters()


def _estimator_name(quant: QuantOptions) -> str:
    if quant.method == "percentile":
        return f"MEAN_QUANTILE ({quant.percentile} %)"
    return RANGE_ESTIMATORS[quant.method] or "MEAN_MINMAX (NNCF default)"


# calibration.bias_correction -> what NNCF runs (the plan's record, part of the engine's cache key)
_BIAS_CORRECTIONS = {
    "default": "FastBiasCorrection (NNCF default)",
    "fast": "FastBiasCorrection",
    "full": "BiasCorrection (fast_bias_correction=False)",
    "none": "none (disable_bias_correction)",
}


def _preset_name(activations: str) -> str | None:
    """NNCF preset: performance = symmetric activations, mixed = asymmetric; None = NNCF's default."""
    return {"symmetric": "performance", "asymmetric": "mixed"}.get(activations)


def quantized_inputs(model) -> set[str]:
    """Compute layers of an ov.Model whose input comes through a FakeQuantize (run int8)."""
    return {
        op.get_friendly_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() in GRAPH_COMPUTE_OPS and op.input_value(0).get_node().get_type_name() == "FakeQuantize"
    }


def quantization_plan(spec: BuildSpec) -> dict[str, Any]:
    """What NNCF will be asked (the plan's `quantization`, part of the artifact's cache key)."""
    quant = spec.quant
    return {
        "tool": "nncf.quantize" if quant.max_dice_drop is None else "nncf.quantize_with_accuracy_control",
        "nncf_version": package_version("nncf"),  # the quantizer's version: part of the artifact key
        "calibration_batch_shape": [1, *spec.input_shape(1)[1:]],
        "activation_range_estimator": _estimator_name(quant),
        "weights_per_channel": quant.weights == "per_channel",
        "preset": _preset_name(quant.activations),
        "overflow_fix": OVERFLOW_FIXES[resolved_overflow_fix(quant)],
        "bias_correction": _BIAS_CORRECTIONS[quant.bias_correction],
        "ignored_scope": list(quant.keep_float),
        "max_dice_drop": quant.max_dice_drop,
    }


def nncf_arguments(quant: QuantOptions, calibration: list[np.ndarray], layers: list[str]) -> dict[str, Any]:
    """nncf.quantize's arguments for `quant`, on single-image batches whatever batch the artifact has (`layers`:
    the graph's compute layers, which `keep_float` names by name or position).

    Calibrating at batch 1 makes the statistics independent of the configured batch; the graph is
    reshaped back afterwards.
    """
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )

    if not calibration:
        raise PipelineError("int8 needs calibration images: set calibration.num_samples > 0")
    advanced = AdvancedQuantizationParameters(
        activations_range_estimator_params=_range_estimator(quant),
        overflow_fix=getattr(OverflowFix, OVERFLOW_FIXES[resolved_overflow_fix(quant)]),
    )
    if quant.weights == "per_tensor":
        advanced.weights_quantization_params = QuantizationParameters(per_channel=False)
    advanced.disable_bias_correction = quant.bias_correction == "none"
    arguments: dict[str, Any] = {
        "calibration_dataset": nncf.Dataset(calibration, lambda image: image[None]),
        "subset_size": len(calibration),
        "advanced_parameters": advanced,  # quantize_with_accuracy_control: advanced_quantization_parameters
        "fast_bias_correction": quant.bias_correction != "full",
    }
    preset = _preset_name(quant.activations)
    if preset:
        arguments["preset"] = getattr(nncf.QuantizationPreset, preset.upper())
    if quant.keep_float:
        arguments["ignored_scope"] = nncf.IgnoredScope(names=resolve_layers(layers, quant.keep_float))
    return arguments


def quantize(model, shape, quant: QuantOptions, calibration: list[np.ndarray], layers: list[str]):
    """Plain NNCF post-training int8 of `model` (its batch free), reshaped back to the artifact's `shape`."""
    import nncf

    quantized = nncf.quantize(model, **nncf_arguments(quant, calibration, layers))
    quantized.reshape(shape)
    return quantized


def _accuracy_control(original, shape, quant, calibration, layers, validation: Validator, session_of):
    """NNCF's quantize_with_accuracy_control on the validation images, reshaped back to the artifact's shape."""
    import nncf

    def validation_fn(compiled, items) -> tuple[float, list[float]]:
        scores = validation.dice(session_of(compiled), list(items))
        return float(np.mean(scores)), scores

    arguments = nncf_arguments(quant, calibration, layers)
    arguments["advanced_quantization_parameters"] = arguments.pop("advanced_parameters")
    final = nncf.quantize_with_accuracy_control(
        original,
        validation_dataset=nncf.Dataset(validation.items),
        validation_fn=validation_fn,
        max_drop=quant.max_dice_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        **arguments,
    )
    final.reshape(shape)
    return final


def quantize_within_drop(
    read: Callable[[], tuple[Any, Any]],
    quant: QuantOptions,
    calibration: list[np.ndarray],
    layers: list[str],
    validation: Validator,
    score: Score,
    session_of: Callable[[Any], Any],
) -> tuple[Any, dict[str, Any]]:
    """Plain NNCF int8 if it is already within `max_dice_drop` on the validation images, else NNCF's accuracy
    control, which reverts the layers that cost the most Dice to float, one at a time; (model, the record of what
    was tried and which layers stayed in float). `read()` gives the exported model with a free batch and the
    artifact's shape; `score(model, config=None)` compiles a candidate as it will run
    (or with `config`) and gives its mean validation Dice; `session_of(compiled)` wraps a compiled model."""
    budget = quant.max_dice_drop
    original, shape = read()
    reference = score(original, {"INFERENCE_PRECISION_HINT": "f32"})  # fp32, as the table's Δ vs fp32
    initial = quantize(*read(), quant, calibration, layers)
    initial_dice = score(initial)
    record: dict[str, Any] = {
        "max_dice_drop": budget,
        "drop_metric": "mean",
        "validation_images": len(validation.items),
        "reference_dice": reference,
        "initial_dice": initial_dice,
    }
    if reference - initial_dice <= budget:
        final, final_dice, kept = initial, initial_dice, []
        record["tool"] = "nncf.quantize (already within budget)"
    else:
        final = _accuracy_control(original, shape, quant, calibration, layers, validation, session_of)
        final_dice = score(final)
        reverted = quantized_inputs(initial) - quantized_inputs(final)
        kept = [name for name in layers if name in reverted]
        record["tool"] = "nncf.quantize_with_accuracy_control"
    if reference - final_dice > budget:
        raise budget_error(budget, reference - final_dice, 1, record={**record, "final_dice": final_dice})
    record.update(
        final_dice=final_dice,
        final_drop=reference - final_dice,
        kept_float=kept,
        kept_float_positions=[layers.index(name) for name in kept],
    )
    return final, record
