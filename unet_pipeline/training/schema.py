"""`python -m unet_pipeline.train`'s structured config: the pipeline's model and data groups plus `train`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from unet_pipeline.config import DataConfig, ModelConfig, register_configs


class AmpMode(str, Enum):
    """train.amp: mixed precision of the forward pass."""

    auto = "auto"  # bf16 autocast where the CPU has native bf16, else float32
    bf16 = "bf16"  # bf16 autocast, refused where the CPU has no native bf16
    off = "off"  # float32


@dataclass
class TeacherSettings:
    checkpoint: str = MISSING  # weights of a UNet like the student's (its own base_width below)
    scale: float = MISSING  # the input scale they were trained at
    base_width: int | None = None  # their architecture's base width; None: the student's


@dataclass
class PhotometricSettings:
    brightness: float = 0.0  # spread of a random brightness factor in [1 - b, 1 + b]; 0: off
    contrast: float = 0.0
    saturation: float = 0.0
    channel_shuffle: float = 0.0  # probability of a random R, G, B permutation


@dataclass
class TrainSettings:
    epochs: int = 7
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    amp: AmpMode = AmpMode.auto
    val_fraction: float = 0.1
    hflip: bool = True
    photometric: PhotometricSettings = field(default_factory=PhotometricSettings)
    ema_decay: float | None = None
    seed: int = 0
    num_threads: int | None = None
    max_images: int | None = None
    init_checkpoint: str | None = None
    init_widen: bool = False
    resume: str | None = None
    progress: bool = True
    crop: list[int] | None = None
    teachers: list[TeacherSettings] = field(default_factory=list)
    distill_weight: float = 1.0
    distill_temperature: float = 1.0


@dataclass
class TrainConfig:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    train: TrainSettings = field(default_factory=TrainSettings)
    tags: list[str] = field(default_factory=list)


def register_train_configs() -> None:
    """The pipeline's schemas and resolvers (model and data are shared), and `train_schema`."""
    register_configs()
    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
