"""Training: the configuration, darknet's optimiser and schedule, the iteration and the loop."""

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
)
from yolov3.train.step import TrainStep

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "MultiscaleConfig",
    "OptimizerConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainStep",
    "build_optimizer",
    "learning_rate",
    "load_config",
    "lr_factor",
    "param_groups",
    "preset_path",
]
