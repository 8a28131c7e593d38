"""Darknet's optimiser and learning-rate schedule (an iteration: :mod:`yolov3.train.step`).

Darknet's loss is a sum over images and its update uses ``learning_rate / batch`` and
``decay * batch``, where ``batch`` counts the images of one optimiser step (all subdivisions):

    v = momentum * v + grad + decay * batch * w      (decay on convolution weights only)
    w = w - learning_rate / batch * factor(iteration) * v

which is ``torch.optim.SGD`` with those two values. The factor is darknet's ``steps`` policy
with a burn-in, a pure function of the iteration, so a resumed run continues the same curve.
Iterations count optimiser steps from 1, like darknet's batch number: the first update is
iteration 1 and a run of ``max_iter`` iterations ends at iteration ``max_iter``.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim import SGD, Optimizer

from yolov3.train.config import OptimizerConfig, ScheduleConfig, TrainConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two SGD parameter groups: convolution weights with ``weight_decay``, everything else
    (batch-norm scales and shifts, convolution biases) without, as darknet updates them."""
    conv_weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    decayed = {id(p) for p in conv_weights}
    others = [p for p in model.parameters() if id(p) not in decayed]
    return [
        {"params": conv_weights, "weight_decay": weight_decay},
        {"params": others, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> SGD:
    """Darknet's SGD for ``model``: lr ``cfg.lr / cfg.batch`` (before the schedule's factor),
    momentum ``cfg.momentum``, weight decay ``cfg.decay * cfg.batch`` on convolution weights."""
    return SGD(
        param_groups(model, cfg.decay * cfg.batch),
        lr=cfg.lr / cfg.batch,
        momentum=cfg.momentum,
    )


def apply_optimizer_config(optimizer: Optimizer, model: nn.Module, cfg: OptimizerConfig) -> None:
    """Give the groups of ``optimizer`` (made by :func:`build_optimizer` for ``model``, then
    perhaps loaded from a checkpoint, which brings the saved run's values) the momentum and
    weight decay that :func:`build_optimizer` gives them for ``cfg``: a resumed run uses its
    current config. The learning rate is set by every iteration and the state is kept."""
    fresh = build_optimizer(model, cfg).param_groups
    if len(fresh) != len(optimizer.param_groups):
        raise ValueError(f"the optimiser has {len(optimizer.param_groups)} parameter groups, "
                         f"expected {len(fresh)}")
    for group, new in zip(optimizer.param_groups, fresh, strict=True):
        if [id(p) for p in group["params"]] != [id(p) for p in new["params"]]:
            raise ValueError("the optimiser's parameter groups are not this model's")
        group["momentum"] = new["momentum"]
        group["weight_decay"] = new["weight_decay"]


def lr_factor(iteration: int, schedule: ScheduleConfig) -> float:
    """Darknet's learning-rate factor at ``iteration`` (``get_current_rate`` / learning_rate):
    ``(iteration / burn_in) ** burn_in_power`` during burn-in, then the product of the
    ``scales`` of every step reached (a step applies from its own iteration on)."""
    if iteration < schedule.burn_in:
        return (iteration / schedule.burn_in) ** schedule.burn_in_power
    factor = 1.0
    for step, scale in zip(schedule.steps, schedule.scales, strict=True):
        if iteration >= step:
            factor *= scale
    return factor


def learning_rate(iteration: int, config: TrainConfig) -> float:
    """The SGD learning rate of ``iteration``: ``lr / batch * lr_factor(iteration)``."""
    opt = config.optimizer
    return opt.lr / opt.batch * lr_factor(iteration, config.schedule)
