"""Darknet's optimiser and learning-rate schedule (an iteration: :mod:`yolov3.train.step`).

Darknet's loss is a sum over images and its update uses ``learning_rate / batch`` and
``decay * batch``, where ``batch`` counts the images of one optimiser step (all subdivisions):

    v = momentum * v + grad + decay * batch * w      (decay on convolution weights only)
    w = w - learning_rate / batch * factor(iteration) * v

which is ``torch.optim.SGD`` with those two values (``nesterov`` adds Nesterov's momentum). The
factor is darknet's ``steps`` policy with a burn-in, or for the improved recipes a cosine or
one-cycle decay: a pure function of the iteration, so a resumed run continues the same curve.

``adamw`` instead takes ``learning_rate * factor`` as its step size (Adam's update does not
depend on the scale of the loss, so the per-image division is not needed) and ``decay`` as its
decoupled weight decay: ``w -= lr * decay * w`` per step, the same shrinking as darknet's SGD
term ``lr / batch * decay * batch * w`` before momentum.
Iterations count optimiser steps from 1, like darknet's batch number: the first update is
iteration 1 and a run of ``max_iter`` iterations ends at iteration ``max_iter``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.optim import SGD, AdamW, Optimizer

from yolov3.errors import choice_problem, raise_problems

if TYPE_CHECKING:
    from yolov3.train.config import TrainConfig

#: ``optimizer.name`` values.
OPTIMIZERS = ("sgd", "adamw")
#: ``schedule.policy`` values.
LR_POLICIES = ("steps", "cosine", "onecycle")


@dataclass
class OptimizerConfig:
    """Darknet's SGD (``name: sgd``): per-image ``lr`` and ``decay``, ``batch`` images per
    optimiser step, taken as ``subdivisions`` accumulated forward/backward passes; with
    ``nesterov``, Nesterov's momentum. ``name: adamw``: AdamW with step size ``lr`` (Adam does
    not depend on the loss's scale), betas (``momentum``, 0.999) and decoupled weight decay
    ``decay`` (see :func:`build_optimizer`)."""

    name: str
    lr: float
    momentum: float
    nesterov: bool
    decay: float
    batch: int
    subdivisions: int

    def __post_init__(self) -> None:
        problems = choice_problem("optimizer.name", self.name, OPTIMIZERS)
        if self.batch < 1 or self.subdivisions < 1 or self.batch % self.subdivisions:
            problems.append(f"optimizer.batch ({self.batch}) must be a positive multiple of "
                            f"optimizer.subdivisions ({self.subdivisions})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"optimizer.lr must be a number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"optimizer.momentum must be >= 0 and < 1, got {self.momentum}")
        if not (math.isfinite(self.decay) and self.decay >= 0):
            problems.append(f"optimizer.decay must be a number >= 0, got {self.decay}")
        raise_problems(problems)

    @property
    def minibatch(self) -> int:
        """Images per forward/backward pass: darknet's ``batch / subdivisions``."""
        return self.batch // self.subdivisions


@dataclass
class ScheduleConfig:
    """The learning-rate factor of each iteration: a polynomial burn-in (warm-up), then
    darknet's ``steps`` policy, or a cosine or one-cycle decay to ``final_lr`` at the run's
    last iteration (see :func:`lr_factor`), and the run's length.

    The length is ``max_iter`` iterations, or with ``epochs`` set, that many passes over the
    training images (``epochs x images / optimizer.batch``, rounded up), at least ``min_iter``
    and at most ``max_iter``. ``burn_in`` and each of ``steps`` are iterations, or, below 1,
    fractions of the length. :meth:`resolve` turns all of them into iterations when the run
    starts (the config then records those, so that a resumed run keeps them)."""

    policy: str
    burn_in: int | float
    burn_in_power: float
    steps: list[int | float]
    scales: list[float]
    final_lr: float
    epochs: float | None
    min_iter: int
    max_iter: int

    def __post_init__(self) -> None:
        problems = choice_problem("schedule.policy", self.policy, LR_POLICIES)
        if len(self.steps) != len(self.scales):
            problems.append(f"schedule.steps has {len(self.steps)} values and schedule.scales "
                            f"{len(self.scales)}; give one scale per step")
        for name, value in (("burn_in", self.burn_in), *(("steps", v) for v in self.steps)):
            if not (math.isfinite(value) and value >= 0 and (value < 1 or value == int(value))):
                problems.append(f"schedule.{name} values are iterations, or fractions of the "
                                f"run's length below 1; got {value}")
        if self.epochs is not None and not (math.isfinite(self.epochs) and self.epochs > 0):
            problems.append(f"schedule.epochs must be a number > 0 (or null: max_iter "
                            f"iterations), got {self.epochs}")
        if self.max_iter < 1:
            problems.append(f"schedule.max_iter must be >= 1, got {self.max_iter}")
        if not 0 <= self.min_iter <= self.max_iter:
            problems.append(f"schedule.min_iter must be in [0, schedule.max_iter], got "
                            f"{self.min_iter}")
        if not 0 <= self.final_lr <= 1:
            problems.append(f"schedule.final_lr is a factor of optimizer.lr in [0, 1], "
                            f"got {self.final_lr}")
        raise_problems(problems)

    def resolve(self, images: int, batch: int) -> str:
        """Turn the length rule and the fractions into iterations for ``images`` training
        images at ``batch`` images an iteration (recorded here: ``epochs`` becomes null);
        returns what the run will be, in words."""
        per_epoch = images / batch
        if self.epochs is not None:
            wanted = math.ceil(self.epochs * per_epoch)
            length = min(max(wanted, self.min_iter), self.max_iter)
            bound = ""
            if length != wanted:
                key = "raised to schedule.min_iter" if length > wanted else "cut to max_iter"
                bound = f", {key} {length:,}"
            rule = f"{self.epochs:g} epochs = {wanted:,} iterations{bound}; "
            self.epochs, self.max_iter = None, length
        else:
            rule = ""
        self.burn_in = self._iterations(self.burn_in)
        self.steps = [self._iterations(v) for v in self.steps]
        steps = f", lr steps at {', '.join(map(str, self.steps))}" if self.policy == "steps" else ""
        return (f"{images:,} training images at batch {batch}: {rule}{self.max_iter:,} "
                f"iterations ({self.max_iter / per_epoch:.1f} epochs), burn-in "
                f"{self.burn_in}{steps}")

    def _iterations(self, value: float) -> int:
        """An iteration, or a fraction of ``max_iter`` below 1, as an iteration."""
        return int(value) if value >= 1 or value == 0 else round(value * self.max_iter)


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


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> Optimizer:
    """The optimiser of ``cfg.name`` for ``model``. ``sgd``: darknet's SGD, lr ``cfg.lr /
    cfg.batch`` (before the schedule's factor), momentum ``cfg.momentum`` (Nesterov's with
    ``cfg.nesterov``), weight decay ``cfg.decay * cfg.batch`` on convolution weights.
    ``adamw``: lr ``cfg.lr``, betas ``(cfg.momentum, 0.999)``, decoupled decay ``cfg.decay`` on
    convolution weights."""
    if cfg.name == "adamw":
        return AdamW(param_groups(model, cfg.decay), lr=cfg.lr, betas=(cfg.momentum, 0.999))
    return SGD(
        param_groups(model, cfg.decay * cfg.batch),
        lr=cfg.lr / cfg.batch,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
    )


def apply_optimizer_config(optimizer: Optimizer, model: nn.Module, cfg: OptimizerConfig) -> None:
    """Give the groups of ``optimizer`` (made by :func:`build_optimizer` for ``model``, then
    perhaps loaded from a checkpoint, which brings the saved run's values) the momentum and
    weight decay that :func:`build_optimizer` gives them for ``cfg``: a resumed run uses its
    current config. The learning rate is set by every iteration and the state is kept."""
    fresh_optimizer = build_optimizer(model, cfg)
    if type(fresh_optimizer) is not type(optimizer):
        raise ValueError(f"the run's optimiser is {type(optimizer).__name__}, the config's "
                         f"{type(fresh_optimizer).__name__}")
    fresh = fresh_optimizer.param_groups
    if len(fresh) != len(optimizer.param_groups):
        raise ValueError(f"the optimiser has {len(optimizer.param_groups)} parameter groups, "
                         f"expected {len(fresh)}")
    for group, new in zip(optimizer.param_groups, fresh, strict=True):
        if [id(p) for p in group["params"]] != [id(p) for p in new["params"]]:
            raise ValueError("the optimiser's parameter groups are not this model's")
        for key in ("momentum", "nesterov", "betas", "weight_decay"):
            if key in new:
                group[key] = new[key]


def lr_factor(iteration: int, schedule: ScheduleConfig) -> float:
    """The learning-rate factor at ``iteration``.

    ``steps`` (darknet's ``get_current_rate`` / learning_rate): ``(iteration / burn_in) **
    burn_in_power`` during burn-in, then the product of the ``scales`` of every step reached (a
    step applies from its own iteration on). ``cosine``: the same burn-in, then half a cosine
    from 1 to ``final_lr`` at ``max_iter``. ``onecycle`` (Smith's one cycle, as
    ``torch.optim.lr_scheduler.OneCycleLR`` with cosine annealing): half a cosine from
    ``final_lr`` up to 1 over the burn-in, then down to ``final_lr`` at ``max_iter``.
    """
    burn_in, final = schedule.burn_in, schedule.final_lr
    if schedule.policy == "onecycle" and iteration < burn_in:
        return final + (1 - final) * (1 - math.cos(math.pi * iteration / burn_in)) / 2
    if iteration < burn_in:
        return (iteration / burn_in) ** schedule.burn_in_power
    if schedule.policy in ("cosine", "onecycle"):
        progress = min((iteration - burn_in) / max(schedule.max_iter - burn_in, 1), 1.0)
        return final + (1 - final) * (1 + math.cos(math.pi * progress)) / 2
    factor = 1.0
    for step, scale in zip(schedule.steps, schedule.scales, strict=True):
        if iteration >= step:
            factor *= scale
    return factor


def learning_rate(iteration: int, config: TrainConfig) -> float:
    """The optimiser's learning rate at ``iteration``: ``lr / batch * lr_factor(iteration)``
    for SGD, ``lr * lr_factor(iteration)`` for AdamW."""
    opt = config.optimizer
    per_step = opt.lr if opt.name == "adamw" else opt.lr / opt.batch
    return per_step * lr_factor(iteration, config.schedule)
