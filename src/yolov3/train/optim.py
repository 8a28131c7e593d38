"""Darknet's optimiser, learning-rate schedule and gradient accumulation.

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

import math
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from yolov3.loss import PARTS
from yolov3.model.darknet import Darknet
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


def set_learning_rate(optimizer: Optimizer, iteration: int, config: TrainConfig) -> float:
    """Give every parameter group the learning rate of ``iteration``; returns it."""
    lr = learning_rate(iteration, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def train_iteration(
    model: Darknet,
    optimizer: Optimizer,
    minibatches: Iterable[tuple[Tensor, list[Tensor]]],
    iteration: int,
    config: TrainConfig,
) -> dict[str, float]:
    """One darknet iteration: a forward and backward pass per minibatch (darknet's
    subdivisions) with the gradients summed, then one SGD step at the lr of ``iteration``.

    Each minibatch is ``(images, targets)`` as ``Darknet.loss`` takes them. Returns the loss
    parts and ``total`` summed over the minibatches, and ``lr``. A non-finite total skips the
    step (the gradients are dropped) and is returned as such for the caller to act on.
    """
    optimizer.zero_grad(set_to_none=True)
    sums = dict.fromkeys((*PARTS, "total"), 0.0)
    for images, targets in minibatches:
        total, parts = model.loss(images, targets)
        total.backward()
        for name, value in (*parts.items(), ("total", total)):
            sums[name] += float(value.detach())
    lr = set_learning_rate(optimizer, iteration, config)
    if math.isfinite(sums["total"]):
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {**sums, "lr": lr}
