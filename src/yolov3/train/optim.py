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

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import SGD, Optimizer

from yolov3.loss import PARTS, yolo_loss
from yolov3.model.network import YOLOv3
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


def set_learning_rate(optimizer: Optimizer, iteration: int, config: TrainConfig) -> float:
    """Give every parameter group the learning rate of ``iteration``; returns it."""
    lr = learning_rate(iteration, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


@dataclass(frozen=True)
class StepOptions:
    """How an iteration runs beyond darknet's arithmetic.

    ``net`` is the module called for the raw outputs (a DistributedDataParallel wrapper of the
    model; None: the model itself). ``world_size`` processes each see a share of every
    minibatch: DDP averages gradients over processes, so each loss is multiplied by
    ``world_size`` to keep darknet's sum. ``amp_dtype`` runs the forward pass under autocast
    (bfloat16 or float16; the loss is computed in float32), with ``scaler`` for float16.
    ``channels_last`` feeds the images in that memory format.
    """

    net: nn.Module | None = None
    world_size: int = 1
    amp_dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    channels_last: bool = False


def _all_processes_sum(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def train_iteration(
    model: YOLOv3,
    optimizer: Optimizer,
    minibatches: Sequence[tuple[Tensor, list[Tensor]]],
    iteration: int,
    config: TrainConfig,
    options: StepOptions = StepOptions(),
) -> dict[str, float]:
    """One darknet iteration: a forward and backward pass per minibatch (darknet's
    subdivisions) with the gradients summed, then one SGD step at the lr of ``iteration``.

    Each minibatch is ``(images, targets)`` as ``YOLOv3.loss`` takes them. Returns the loss
    parts and ``total`` summed over the minibatches (and over all processes), and ``lr``. A
    non-finite total skips the step on every process (the gradients are dropped) and is
    returned as such for the caller to act on.
    """
    # The model's raw outputs whatever its mode (a test may step with frozen batch norm); a DDP
    # wrapper calls the model's forward, which gives them in training mode.
    net = model if options.net is None else options.net
    forward = model.forward_raw if options.net is None else options.net
    optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(len(PARTS) + 1, dtype=torch.float64)
    for k, (images, targets) in enumerate(minibatches):
        if options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sync = k == len(minibatches) - 1 or not hasattr(net, "no_sync")
        with contextlib.nullcontext() if sync else net.no_sync():
            with torch.autocast(images.device.type, options.amp_dtype,
                                enabled=options.amp_dtype is not None):
                raw = forward(images)
            total, parts = yolo_loss(model, [r.float() for r in raw], targets,
                                     (images.shape[2], images.shape[3]))
            loss = total * options.world_size
            (options.scaler.scale(loss) if options.scaler else loss).backward()
        sums += torch.stack([*(parts[n].detach() for n in PARTS), total.detach()]).cpu()
    sums = _all_processes_sum(sums.to(next(model.parameters()).device)).cpu()
    lr = set_learning_rate(optimizer, iteration, config)
    if math.isfinite(float(sums[-1])):
        if options.scaler:
            options.scaler.step(optimizer)
            options.scaler.update()
        else:
            optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {**dict(zip((*PARTS, "total"), sums.tolist(), strict=True)), "lr": lr}
