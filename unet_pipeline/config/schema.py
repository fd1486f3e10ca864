"""Structured-config schemas: every YAML under conf/ is merged into one of these dataclasses.

Why: a typo (`batch=x`, `precision.mode=fp17`, `data.rooot=...`) must fail at composition with the
list of valid choices, not deep inside a stage. Enums list their members in OmegaConf's error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from unet_pipeline.config.choices import (
    ActivationScheme,
    BadSamplePolicy,
    BiasCorrection,
    CalibrationMethod,
    DecodeMode,
    DropMetric,
    InputFormat,
    LoggerKind,
    MaskFormat,
    Objective,
    OverflowFix,
    PrecisionMode,
    Resize,
    ShapeMode,
    Split,
    WeightGranularity,
)


@dataclass
class ModelConfig:
    name: str = MISSING
    checkpoint: str | None = None
    n_channels: int = 3
    n_classes: int = 2
    bilinear: bool = False
    base_width: int = 64
    scale: float = 0.5
    align: int = 0
    input_format: InputFormat = InputFormat.float_nchw
    resize: Resize = Resize.cv2_cubic


@dataclass
class PrecisionConfig:
    mode: PrecisionMode = MISSING


@dataclass
class ShapeConfig:
    mode: ShapeMode = MISSING
    batch_min: int = 1
    batch_max: int = 64


@dataclass
class CalibrationConfig:
    root: str | None = "${data.root}"
    num_samples: int = 50
    seed: int = 0
    method: CalibrationMethod = CalibrationMethod.default
    percentile: float = 99.999
    weights: WeightGranularity = WeightGranularity.per_channel
    activations: ActivationScheme = ActivationScheme.default
    keep_float: list[str] = field(default_factory=list)
    max_dice_drop: float | None = None
    drop_metric: DropMetric = DropMetric.mean
    overflow_fix: OverflowFix = OverflowFix.auto
    bias_correction: BiasCorrection = BiasCorrection.default
    validation_samples: int = 32
    search_trials: int = 8


@dataclass
class DeviceConfig:
    name: str = MISSING
    kind: str = MISSING
    arch: str | None = None
    cluster_num: list[int] | None = None


@dataclass
class SyntheticConfig:
    """Generate the dataset on first use (unet_pipeline/data/synthetic.py), only into `root`."""

    root: str | None = None  # the directory the pipeline owns for it: nothing is generated anywhere else
    cars: int = 24
    views: int = 4
    seed: int = 0


@dataclass
class DataConfig:
    name: str = MISSING
    synthetic: SyntheticConfig | None = None
    root: str | None = None
    split: Split = Split.val
    val_fraction: float = 0.1
    num_images: int | None = None
    frame_width: int = 1918
    frame_height: int = 1280
    images_dir: str = "imgs"
    masks_dir: str = "masks"
    mask_suffix: str = "_mask"
    on_bad_sample: BadSamplePolicy = BadSamplePolicy.fail
    decode: DecodeMode = DecodeMode.full
    prefetch_batches: int = 2
    workers: int = 2
    cache_inputs: bool = False


@dataclass
class OpenVINOEngineConfig:
    _target_: str = "unet_pipeline.engines.openvino.OpenVINOEngine"
    performance_hint: str = "LATENCY"
    num_threads: int | None = None
    num_streams: int | None = None


@dataclass
class OnnxRuntimeEngineConfig:
    _target_: str = "unet_pipeline.engines.onnxruntime.OnnxRuntimeEngine"
    graph_optimization_level: str = "all"
    intra_op_num_threads: int | None = None
    inter_op_num_threads: int | None = None
    activation_type: str = "uint8"


@dataclass
class TorchEngineConfig:
    _target_: str = "unet_pipeline.engines.pytorch.TorchEngine"
    compile: bool = False
    freezing: bool = True
    compile_mode: str = "default"


@dataclass
class MagicMindEngineConfig:
    _target_: str = "unet_pipeline.engines.magicmind.MagicMindEngine"
    arch: str | None = "${device.arch}"
    cluster_num: list[int] | None = "${device.cluster_num}"  # type: ignore[assignment]
    device_id: int = 0
    fold_normalization: bool = True
    input_layout: str = "NCHW"
    computation_preference: str = "auto"
    type64to32_conversion: bool = True
    conv_scale_fold: bool = False
    user_json: str | None = None


@dataclass
class BenchmarkConfig:
    enabled: bool = True
    warmup_iterations: int = 3
    warmup_seconds: float = 1.0
    warmup_max_seconds: float = 5.0
    iterations: int = 10
    min_seconds: float = 3.0
    max_seconds: float = 30.0
    repeats: int = 1
    async_requests: int = 2
    vendor_tool: bool = False
    vendor_seconds: float = 10.0
    lock_dir: str | None = None


@dataclass
class SaveConfig:
    masks: bool = False
    overlays: int = 0


@dataclass
class MetricsConfig:
    full_resolution: bool = True


@dataclass
class CacheConfig:
    enabled: bool = True
    dir: str = "outputs/cache"


@dataclass
class SelectConfig:
    """conf/select/*.yaml: which configuration of a sweep to ship, under which constraints."""

    max_dice_drop: float | None = 0.001
    max_image_drop: float | None = None
    min_throughput: float | None = None
    max_p99_ms: float | None = None
    objective: Objective = Objective.e2e_throughput
    bundle: str | None = None


@dataclass
class LoggerConfig:
    """conf/logger/*.yaml: experiment tracking (unet_pipeline/report/tracking.py)."""

    name: LoggerKind = LoggerKind.none
    tracking_uri: str | None = None
    experiment: str | None = None
    timeout_s: float = 10.0
    retries: int = 1
    artifacts: bool = True


@dataclass
class PipelineConfig:
    model: ModelConfig = MISSING
    precision: PrecisionConfig = MISSING
    shape: ShapeConfig = MISSING
    calibration: CalibrationConfig = MISSING
    device: DeviceConfig = MISSING
    engine: Any = MISSING
    data: DataConfig = MISSING
    benchmark: BenchmarkConfig = MISSING
    cache: CacheConfig = field(default_factory=CacheConfig)
    save: SaveConfig = field(default_factory=SaveConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    batch: int = 1
    dry_run: bool = False
    strict_precision: bool = True
    progress: bool = True
    force: bool = False
    tags: list[str] = field(default_factory=list)


@dataclass
class SegmentConfig(PipelineConfig):
    """`python -m unet_pipeline.segment`: its own keys (conf/segment.yaml) beside the pipeline's groups, which a
    run without a bundle builds (or takes from the cache)."""

    bundle: str | None = None
    input: str = MISSING
    output: str = MISSING
    masks: str | None = None
    output_format: MaskFormat = MaskFormat.png
    overwrite: bool = False
    on_bad_image: BadSamplePolicy = BadSamplePolicy.skip
    shard: int = 0
    num_shards: int = 1
