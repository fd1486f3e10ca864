"""TODO."""

from __future__ import annotations

from unet_pipeline.engines.spec import QuantOptions

_GRAPH_COMPUTE_OPS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"}  # ov.Model op types
# calibration.method -> NNCF activation range estimator (None: NNCF's default, MEAN_MINMAX)
_RANGE_ESTIMATORS = {"default": None, "minmax": "MINMAX", "mean_minmax": "MEAN_MINMAX", "histogram": "HISTOGRAM"}
# calibration.overflow_fix -> nncf OverflowFix member (7-bit weights: in every layer, the first only, none)
_OVERFLOW_FIXES = {"enable": "ENABLE", "first_layer": "FIRST_LAYER", "disable": "DISABLE"}


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
    name = _RANGE_ESTIMATORS[quant.method]
    return getattr(re_.RangeEstimatorParametersSet, name) if name else re_.RangeEstimatorParameters()


def _estimator_name(quant: QuantOptions) -> str:
    if quant.method == "percentile":
        return f"MEAN_QUANTILE ({quant.percentile} %)"
    return _RANGE_ESTIMATORS[quant.method] or "MEAN_MINMAX (NNCF default)"


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
        if op.get_type_name() in _GRAPH_COMPUTE_OPS and op.input_value(0).get_node().get_type_name() == "FakeQuantize"
    }
