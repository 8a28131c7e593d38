"""Training: the configuration, darknet's optimiser and schedule, the iteration, the loop and
its hooks."""

from yolov3.train.config import TrainConfig, load_config
from yolov3.train.hooks import Hook, StepInfo
from yolov3.train.optim import (
    build_optimizer,
    learning_rate,
    lr_factor,
    param_groups,
)
from yolov3.train.step import TrainStep
from yolov3.train.trainer import Trainer

__all__ = [
    "Hook",
    "StepInfo",
    "TrainConfig",
    "TrainStep",
    "Trainer",
    "build_optimizer",
    "learning_rate",
    "load_config",
    "lr_factor",
    "param_groups",
]
