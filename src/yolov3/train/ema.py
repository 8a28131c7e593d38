"""An exponential moving average (EMA) of the weights, the detector an improved recipe keeps.

After every optimiser step each floating-point tensor of the model's state (parameters and
batch-norm statistics) moves towards the trained one:

    ema = d * ema + (1 - d) * weights,    d = decay * (1 - exp(-updates / ramp))

where ``updates`` counts the steps since the start. The ramp lets the average follow the fast
early changes (d is near 0 at first) and then average over about ``1 / (1 - decay)`` steps,
as in ultralytics' YOLOv3 (decay 0.9999, ramp 2000). Darknet keeps no average: its recipe
has ``ema.decay: 0``. The average is what evaluation, ``best.pt``, the exported weights and
the detector use; training continues from the weights themselves, so both are checkpointed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from yolov3.errors import raise_problems
from yolov3.model.network import YOLOv3


@dataclass
class EmaConfig:
    """The ``ema`` section: the moving average's ``decay`` and ``ramp`` (iterations), as in
    the module docstring; ``decay`` 0 keeps none (darknet)."""

    decay: float
    ramp: float

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.decay < 1:
            problems.append(f"ema.decay must be in [0, 1) (0: no average), got {self.decay}")
        if not (math.isfinite(self.ramp) and self.ramp > 0):
            problems.append(f"ema.ramp must be a number of iterations > 0, got {self.ramp}")
        raise_problems(problems)


class WeightsEMA:
    """The moving average of ``model``'s floating-point state (a frozen copy of the model in
    evaluation mode, :attr:`model`), ``decay`` and ``ramp`` as in the module docstring."""

    def __init__(self, model: YOLOv3, decay: float, ramp: float, updates: int = 0) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        if ramp <= 0:
            raise ValueError(f"the EMA ramp must be > 0 iterations, got {ramp}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, ramp, updates
        self._pairs = [(mine, theirs) for mine, theirs in
                       zip(self.model.state_dict().values(), model.state_dict().values(),
                           strict=True) if mine.dtype.is_floating_point]

    def tensors(self) -> list[torch.Tensor]:
        """The averaged tensors themselves (the model's floating-point state), in order."""
        return [mine for mine, _ in self._pairs]

    def factor(self, updates: int) -> float:
        """The weight ``d`` of the average at update number ``updates`` (from 1)."""
        return self.decay * (1 - math.exp(-updates / self.ramp))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the model's current state."""
        self.updates += 1
        weight = 1 - self.factor(self.updates)
        for mine, theirs in self._pairs:
            mine.lerp_(theirs, weight)

    def load(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Take a saved average (a state dict of the model) and its update count."""
        self.model.load_state_dict(state)
        self.updates = updates
