"""The ``train`` section of a training config: how the trainer runs (where, with what seed, how
many loader processes, mixed precision, the memory format), how often it evaluates, saves and
logs, and when it stops; checked when it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from yolov3.devices import parse_device
from yolov3.errors import ConfigError, choice_problem, raise_problems
from yolov3.inputs.loader import auto_workers
from yolov3.train.loggers import check_loggers
from yolov3.train.step import AMP_MODES

#: ``train.workers`` value that counts the cores (see :func:`auto_workers`).
AUTO_WORKERS = "auto"


@dataclass
class RunConfig:
    """The ``train`` section: how the trainer runs (where, with what seed, how many loader
    processes, mixed precision and the memory format), how often it evaluates, saves and logs
    (and to which ``loggers`` besides ``results.csv``), and when it stops."""

    device: str
    seed: int
    workers: int | str
    eval_interval: int
    checkpoint_interval: int
    log_interval: int
    loggers: list[str]
    max_nonfinite: int
    time_limit: float
    amp: str
    channels_last: bool
    compile: bool
    sync_bn: bool
    cudnn_benchmark: bool

    def __post_init__(self) -> None:
        at_least = {"train.seed": (self.seed, 0),
                    "train.eval_interval": (self.eval_interval, 0),
                    "train.checkpoint_interval": (self.checkpoint_interval, 0),
                    "train.log_interval": (self.log_interval, 1),
                    "train.max_nonfinite": (self.max_nonfinite, 1)}
        problems = [f"{name} must be >= {low}, got {value}"
                    for name, (value, low) in at_least.items() if value < low]
        if self.workers != AUTO_WORKERS and (isinstance(self.workers, str) or self.workers < 0):
            problems.append(f"train.workers is a number of loader processes >= 0 or "
                            f"'{AUTO_WORKERS}', got {self.workers!r}")
        if self.seed >= 2**63:
            problems.append(f"train.seed must be < 2**63, got {self.seed}")
        if not (math.isfinite(self.time_limit) and self.time_limit >= 0):
            problems.append(f"train.time_limit must be a number of seconds >= 0 (0: none), "
                            f"got {self.time_limit}")
        problems += choice_problem("train.amp", self.amp, AMP_MODES)
        problems += check_loggers(self.loggers)
        try:
            self._device = parse_device(self.device, "train.device")
        except ConfigError as exc:
            problems.append(str(exc))
        raise_problems(problems)

    @property
    def loader_workers(self) -> int:
        """``workers``, ``auto`` counted for this process (:func:`auto_workers`)."""
        return auto_workers() if self.workers == AUTO_WORKERS else int(self.workers)

    @property
    def torch_device(self) -> torch.device:
        """The device ``device`` names on this machine (``auto``: see
        :func:`~yolov3.devices.auto_device`), resolved when the section was made."""
        return self._device
