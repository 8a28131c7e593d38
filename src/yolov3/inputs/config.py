"""The ``augment`` and ``multiscale`` sections of a training config: darknet's augmentation
and random input sizes, with the switches of the improved recipes, each checked when made."""

from __future__ import annotations

import math
from dataclasses import dataclass

from yolov3.errors import raise_problems
from yolov3.inputs.augment import RandomBoxOrder, TrainTransform
from yolov3.inputs.loader import MultiScale
from yolov3.inputs.mix import Mix
from yolov3.model.cfg import MAX_IMG_SIZE, STRIDE


def size_problems(sizes: dict[str, int]) -> list[str]:
    """The problems of network input sides: each a positive multiple of :data:`STRIDE`, at
    most :data:`MAX_IMG_SIZE` (a ``step`` between sizes has no upper bound)."""
    problems = []
    for name, size in sizes.items():
        if size < STRIDE or size % STRIDE:
            problems.append(f"{name} must be a positive multiple of {STRIDE}, got {size}")
        elif not name.endswith(".step") and size > MAX_IMG_SIZE:
            problems.append(f"{name} must be at most {MAX_IMG_SIZE} (memory grows with the "
                            f"square of the side), got {size}")
    return problems


@dataclass
class AugmentConfig:
    """Darknet's training augmentation (see :class:`~yolov3.inputs.augment.TrainTransform`),
    with the random ``scale`` and the ``mosaic`` and ``mixup`` of the improved recipes
    (:mod:`yolov3.inputs.mix`), off at 0."""

    jitter: float
    random_placing: bool
    hue: float
    saturation: float
    exposure: float
    flip: float
    scale: float
    mosaic: float
    mixup: float

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.jitter < 1:
            problems.append(f"augment.jitter must be in [0, 1), got {self.jitter}")
        if not 0 <= self.hue <= 0.5:
            problems.append(f"augment.hue must be in [0, 0.5], got {self.hue}")
        for name, factor in (("saturation", self.saturation), ("exposure", self.exposure)):
            if not (math.isfinite(factor) and factor >= 1):
                problems.append(f"augment.{name} is a factor >= 1 (1 = off), got {factor}")
        if not 0 <= self.flip <= 1:
            problems.append(f"augment.flip is a probability in [0, 1], got {self.flip}")
        if not 0 <= self.scale < 1:
            problems.append(f"augment.scale must be in [0, 1), got {self.scale}")
        for name, value in (("augment.mosaic", self.mosaic), ("augment.mixup", self.mixup)):
            if not 0 <= value <= 1:
                problems.append(f"{name} is a probability in [0, 1], got {value}")
        raise_problems(problems)

    def build(self, max_labels: int) -> RandomBoxOrder:
        """The transform that applies this augmentation, keeping ``max_labels`` boxes (a random
        ``max_labels`` of an image that has more, as darknet's ``randomize_boxes``)."""
        return RandomBoxOrder(TrainTransform(self.jitter, self.random_placing, self.hue,
                                             self.saturation, self.exposure, self.flip,
                                             max_labels, scale=self.scale))

    def build_mix(self) -> Mix | None:
        """The mosaic and mixup of the training stream (None when both are off)."""
        if not (self.mosaic or self.mixup):
            return None
        return Mix(mosaic=self.mosaic, mixup=self.mixup)


@dataclass
class MultiscaleConfig:
    """Darknet's random input resizing during training; ``interval`` 0 keeps one size."""

    interval: int
    min_size: int
    max_size: int
    step: int

    def __post_init__(self) -> None:
        problems = [] if self.interval >= 0 else [
            f"multiscale.interval must be >= 0, got {self.interval}"]
        problems += size_problems({"multiscale.min_size": self.min_size,
                                   "multiscale.max_size": self.max_size,
                                   "multiscale.step": self.step})
        if self.min_size > self.max_size:
            problems.append("multiscale.min_size must not exceed multiscale.max_size")
        raise_problems(problems)

    def build(self, img_size: int, aspect: float = 1.0) -> MultiScale:
        """The input sizes of training: these, or ``img_size`` alone when ``interval`` is 0,
        of width / height ``aspect``."""
        if self.interval == 0:
            return MultiScale(img_size, img_size, 1, STRIDE, aspect)
        return MultiScale(self.min_size, self.max_size, self.interval, self.step, aspect)
