"""Every choice a config key offers, as an enum: a typo fails at composition with the valid values listed."""

from __future__ import annotations

from enum import Enum


class PrecisionMode(str, Enum):
    """MagicMind's precision vocabulary, plus the bf16 modes of engines that have bf16."""

    force_float32 = "force_float32"
    force_float16 = "force_float16"
    force_bfloat16 = "force_bfloat16"
    qint8_mixed_float32 = "qint8_mixed_float32"
    qint8_mixed_float16 = "qint8_mixed_float16"
    qint8_mixed_bfloat16 = "qint8_mixed_bfloat16"
    qint16_mixed_float32 = "qint16_mixed_float32"
    qint16_mixed_float16 = "qint16_mixed_float16"


class Resize(str, Enum):
    """How a model's weights expect images to be resized (data.Preprocessing): part of the model's contract."""

    pil_bicubic = "pil_bicubic"  # milesial's BasicDataset.preprocess: PIL bicubic, antialiased when shrinking
    cv2_cubic = "cv2_cubic"  # OpenCV bicubic: no antialiasing, ~10x cheaper
    cv2_area = "cv2_area"  # OpenCV area average: the closer of the two to PIL's


class ShapeMode(str, Enum):
    static = "static"
    dynamic = "dynamic"


class Split(str, Enum):
    val = "val"
    all = "all"


class InputFormat(str, Enum):
    float_nchw = "float_nchw"
    uint8_nhwc = "uint8_nhwc"


class DecodeMode(str, Enum):
    full = "full"
    reduced = "reduced"


class CalibrationMethod(str, Enum):
    """Activation-range statistics; each engine maps the ones it has (Engine.capabilities)."""

    default = "default"  # the engine's recommended one
    minmax = "minmax"  # global min/max (ORT MinMax, MagicMind LINEAR_ALGORITHM)
    mean_minmax = "mean_minmax"  # mean over images of each image's min/max (NNCF's default)
    percentile = "percentile"  # clip outliers at calibration.percentile
    entropy = "entropy"  # KL-divergence threshold (ORT Entropy)
    histogram = "histogram"  # range minimising quantization error over a histogram (NNCF HISTOGRAM)
    eqnm = "eqnm"  # MagicMind EQNM_ALGORITHM


class WeightGranularity(str, Enum):
    per_channel = "per_channel"
    per_tensor = "per_tensor"


class ActivationScheme(str, Enum):
    default = "default"
    symmetric = "symmetric"
    asymmetric = "asymmetric"


class DropMetric(str, Enum):
    mean = "mean"  # the mean Dice over the validation images
    worst_image = "worst_image"  # the largest drop of any single validation image


class OverflowFix(str, Enum):
    """7-bit int8 weights against u8 x s8 saturation on CPUs without VNNI (unet_pipeline/core/isa.py)."""

    auto = "auto"  # each engine decides for the CPU it builds on (the table and result.json say what and why)
    enable = "enable"  # 7-bit weights in every layer (ONNX Runtime reduce_range=True, NNCF OverflowFix.ENABLE)
    first_layer = "first_layer"  # in the first layer only (NNCF's default; OpenVINO only)
    disable = "disable"  # full 8-bit weights everywhere


class BiasCorrection(str, Enum):
    """Biases re-fitted after calibration so each int8 layer's mean output matches float (NNCF; engines without it
    take `default` or `none`, which there are the same)."""

    default = "default"  # the engine's own (NNCF: fast)
    fast = "fast"  # from each layer's own float and int8 outputs (NNCF fast_bias_correction=True)
    full = "full"  # through the already quantized layers before it: slower, closer (fast_bias_correction=False)
    none = "none"  # biases as trained


class BadSamplePolicy(str, Enum):
    fail = "fail"
    skip = "skip"


class Objective(str, Enum):
    """What the recommendation maximises among the rows that meet the constraints (report/recommend.py)."""

    e2e_throughput = "e2e_throughput"  # images/s end to end, decode to Dice: what a deployment sees
    engine_throughput = "engine_throughput"  # images/s of the engine alone
    latency = "latency"  # the lowest p99 of one engine call


class MaskFormat(str, Enum):
    png = "png"  # one PNG per image (0/255), the input's relative path mirrored
    rle = "rle"  # one CSV of Carvana run-length codes (img,rle_mask)
    both = "both"


class LoggerKind(str, Enum):
    none = "none"
    mlflow = "mlflow"
