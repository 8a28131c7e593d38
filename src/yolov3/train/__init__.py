"""Training: the configuration, darknet's optimiser and learning-rate schedule."""

from yolov3.train.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    MultiscaleConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    TrainConfig,
    load_config,
    preset_path,
)
from yolov3.train.optim import (
    build_optimizer,
    learning_rate,
    lr_factor,
    param_groups,
    set_learning_rate,
    train_iteration,
)

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "MultiscaleConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "build_optimizer",
    "learning_rate",
    "load_config",
    "lr_factor",
    "param_groups",
    "preset_path",
    "set_learning_rate",
    "train_iteration",
]
