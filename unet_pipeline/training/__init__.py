"""Training: the weight-training lab behind the bundled checkpoints (the loop, validation, weight averages,
distillation, widening, augmentation and its own schema); the deployment tool does not import it."""

from unet_pipeline.training.loop import train
from unet_pipeline.training.schema import TrainConfig, register_train_configs
from unet_pipeline.training.soup import average_states
from unet_pipeline.training.validation import validation_dice

__all__ = ["TrainConfig", "average_states", "register_train_configs", "train", "validation_dice"]
