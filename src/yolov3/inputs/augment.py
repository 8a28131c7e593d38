"""Darknet's training augmentation (as DeNA's PyTorch_YOLOv3 runs it) and the plain evaluation
letterbox, both turning a :class:`Sample` into a network input and its training targets.

Training (REFERENCE.md, "Training recipe"): aspect-ratio jitter, the jittered image resized so
that it fits the input (its longer side set to the input size; darknet has no random scale, the
improved recipe's ``scale`` zooms it by a random factor, cutting what overflows the input),
placed at a random position on a grey (127) canvas, HSV distortion of the whole canvas,
horizontal flip.
The boxes follow every step, are clipped to the canvas, dropped when under one pixel wide or
high, and at most ``max_labels`` are kept. Boxes marked ``ignore`` (COCO crowd, VOC difficult)
are not training targets and are dropped first. Training wraps the transform in
:class:`RandomBoxOrder`, darknet's ``randomize_boxes``: an image with more boxes than the cap
has them in a random order first, so that every epoch keeps another random ``max_labels`` of
them rather than the first ones of its label file.

Both transforms return the image as a float32 (3, H, W) tensor in [0, 1] (from the training
transform, a view of channels-last memory; the loader's collate stacks it into a contiguous
batch) and the targets as an (n, 5) float32 tensor of ``class, xc, yc, w, h`` normalised to the
network input: what the loss takes (:func:`yolov3.loss.yolo_loss`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_convert

from yolov3.datasets.boxes import MAX_LABELS, clip_boxes, large_enough
from yolov3.datasets.sample import Sample
from yolov3.images import letterbox, letterbox_geometry

# The grey of darknet's canvas around the placed image (uint8).
CANVAS_GREY = 127


class Transform(Protocol):
    """A sample -> (image (3, H, W) float32 in [0, 1], targets (n, 5)) at a given input size,
    keeping at most ``max_labels`` targets."""

    max_labels: int

    def __call__(
        self, sample: Sample, input_hw: tuple[int, int], rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]: ...


def place_boxes(
    sample: Sample,
    scale_xy: tuple[float, float],
    offset_xy: tuple[float, float],
    input_hw: tuple[int, int],
    flip: bool = False,
    max_labels: int = MAX_LABELS,
) -> Tensor:
    """The training targets of ``sample`` once its image is resized by ``scale_xy``, placed at
    ``offset_xy`` in an input of ``input_hw`` and, with ``flip``, mirrored left-right.

    Ignored boxes are dropped, the others clipped to the input, dropped when under one pixel wide
    or high, and the first ``max_labels`` kept. Returns (n, 5) float32 ``class, xc, yc, w, h``
    normalised to the input (DeNA's ``label2yolobox``).
    """
    in_h, in_w = input_hw
    sx, sy = scale_xy
    dx, dy = offset_xy
    boxes = sample.boxes[~sample.ignore].astype(np.float64) * [sx, sy, sx, sy] + [dx, dy, dx, dy]
    labels = sample.labels[~sample.ignore]
    if flip:
        boxes[:, [0, 2]] = in_w - boxes[:, [2, 0]]
    boxes = clip_boxes(boxes, np.array(input_hw))
    keep = large_enough(boxes)
    boxes, labels = boxes[keep][:max_labels], labels[keep][:max_labels]
    cxcywh = box_convert(torch.from_numpy(boxes), "xyxy", "cxcywh")
    cxcywh /= torch.tensor([in_w, in_h, in_w, in_h], dtype=cxcywh.dtype)
    return torch.cat([torch.from_numpy(labels).to(cxcywh.dtype)[:, None], cxcywh], 1).float()


def resize_linear(image: np.ndarray, new_hw: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 resized to ``new_hw`` (height, width) with OpenCV's bilinear
    interpolation (half-pixel centres: a point at image x lands at x * new_w / w)."""
    new_h, new_w = new_hw
    return cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Copy ``image`` onto ``canvas`` (both (H, W, 3)) with its top-left pixel at (x, y), which
    may lie outside the canvas: what falls outside is cut off."""
    h, w = image.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, canvas.shape[1]), min(y + h, canvas.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]


def random_offset(rng: np.random.Generator, room: int) -> int:
    """Darknet's random placing along one axis with ``room`` = input side - image side: an
    integer offset uniform in [0, room], or in [room, 0] for an image larger than the input
    (a random crop)."""
    return int(rng.integers(min(0, room), max(0, room), endpoint=True))


def random_scale(rng: np.random.Generator, s: float) -> float:
    """Darknet's ``rand_scale``: a factor drawn from U(1, s), inverted with probability 1/2."""
    scale = rng.uniform(1.0, s)
    return scale if rng.random() < 0.5 else 1.0 / scale


def distort_hsv(image: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """Darknet's ``distort_image`` on an (H, W, 3) float32 RGB image in [0, 1]: the hue shifted
    by ``dhue`` of a full turn (wrapping), saturation and value (exposure) multiplied by
    ``dsat`` and ``dexp``, back to RGB, clamped to [0, 1] (``constrain_image``). Returns a new
    float32 RGB image."""
    # Float input: hue in degrees [0, 360). OpenCV's HSV -> RGB wraps hues in [360, 720), so a
    # shift taken modulo 360 (never negative) needs no wrapping here; like darknet's
    # ``hsv_to_rgb`` it applies the formula to saturation or value above 1.
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    affine = np.array([[1, 0, 0, dhue * 360.0 % 360.0], [0, dsat, 0, 0], [0, 0, dexp, 0]],
                      np.float32)
    cv2.transform(hsv, affine, dst=hsv)  # per pixel: (h + shift, s * dsat, v * dexp)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB, dst=hsv)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


class TrainTransform:
    """Darknet's / DeNA's training augmentation. Every step can be switched off:

    - ``jitter``: aspect-ratio jitter, new_ar = (w ± U(jitter·w)) / (h ± U(jitter·h)); 0 keeps
      the aspect. The jittered image is resized so that it fits the input, its longer side (in
      proportion to the input) set to the input size (DeNA's ``preprocess``).
    - ``random_placing``: a random position on the grey canvas instead of the centre.
    - ``hue``, ``saturation``, ``exposure``: HSV distortion after letterboxing, hue shifted by
      U(-hue, hue) of a turn, saturation and value scaled by U(1, s) inverted with probability
      1/2 (darknet's ``random_distort_image``); hue 0 and both factors 1 switch it off.
    - ``flip``: probability of the horizontal flip (darknet's ``flip``, DeNA's ``LRFLIP``).
    - ``max_labels``: the targets kept per image.
    - ``scale``: random zoom (ultralytics' ``scale``, in [0, 1); 0, darknet's, is off): the
      fitted size multiplied by U(1 - scale, 1 + scale). A zoomed image larger than the input
      is cut: placed at a random offset in [input - size, 0] (centred without
      ``random_placing``); the boxes are clipped to the input as always.

    The values are checked where they are set, when the training config loads
    (:class:`~yolov3.train.config.AugmentConfig` builds this transform).

    The image is resized with bilinear interpolation (OpenCV, half-pixel centres), so that a
    box edge at image coordinate x lands at x * new_w / w + dx.
    """

    def __init__(
        self,
        jitter: float = 0.3,
        random_placing: bool = True,
        hue: float = 0.1,
        saturation: float = 1.5,
        exposure: float = 1.5,
        flip: float = 0.5,
        max_labels: int = MAX_LABELS,
        scale: float = 0.0,
    ) -> None:
        self.jitter, self.random_placing = jitter, random_placing
        self.hue, self.saturation, self.exposure = hue, saturation, exposure
        self.flip, self.max_labels, self.scale = flip, max_labels, scale

    def __repr__(self) -> str:
        return (f"TrainTransform(jitter={self.jitter}, random_placing={self.random_placing}, "
                f"hue={self.hue}, saturation={self.saturation}, exposure={self.exposure}, "
                f"flip={self.flip}, max_labels={self.max_labels}, scale={self.scale})")

    @property
    def distorts(self) -> bool:
        """Whether the HSV distortion is on."""
        return self.hue > 0 or self.saturation > 1 or self.exposure > 1

    def __call__(
        self, sample: Sample, input_hw: tuple[int, int], rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        """The augmented network input of ``input_hw`` (height, width) and its targets. Every
        random draw comes from ``rng``, the geometric ones first (jitter, zoom, placing, flip),
        so that switching the HSV distortion on or off leaves the geometry of a given ``rng``
        unchanged; a switch that is off draws nothing."""
        h, w = sample.size
        in_h, in_w = input_hw
        jit_w = w + rng.uniform(-self.jitter * w, self.jitter * w) if self.jitter else w
        jit_h = h + rng.uniform(-self.jitter * h, self.jitter * h) if self.jitter else h
        # The jittered size only sets the aspect: fit it to the input as darknet's letterbox.
        new_h, new_w, _ = letterbox_geometry((jit_h, jit_w), input_hw)
        if self.scale:
            zoom = rng.uniform(1.0 - self.scale, 1.0 + self.scale)
            new_h, new_w = max(round(new_h * zoom), 1), max(round(new_w * zoom), 1)
        if self.random_placing:
            dx, dy = random_offset(rng, in_w - new_w), random_offset(rng, in_h - new_h)
        else:  # centred, as the letterbox (a negative offset crops both sides)
            dx, dy = (in_w - new_w) // 2, (in_h - new_h) // 2
        flip = bool(rng.random() < self.flip) if self.flip else False

        canvas = np.full((in_h, in_w, 3), CANVAS_GREY, np.uint8)
        paste(canvas, resize_linear(sample.image, (new_h, new_w)), dx, dy)
        if flip:  # before the HSV distortion, which works pixel by pixel: the same result
            canvas = cv2.flip(canvas, 1)
        image = np.multiply(canvas, np.float32(1 / 255), dtype=np.float32)
        if self.distorts:
            dhue = rng.uniform(-self.hue, self.hue)
            dsat = random_scale(rng, self.saturation)
            dexp = random_scale(rng, self.exposure)
            image = distort_hsv(image, dhue, dsat, dexp)
        targets = place_boxes(sample, (new_w / w, new_h / h), (dx, dy), input_hw, flip,
                              self.max_labels)
        # A (3, H, W) view of the channels-last pixels: the collate's stack makes the batch
        # contiguous in the same pass that copies it.
        return torch.from_numpy(image).permute(2, 0, 1), targets


class RandomBoxOrder:
    """Darknet's ``randomize_boxes`` before the cap of ``transform`` (a :class:`TrainTransform`):
    an image with more training boxes (not ignored) than ``transform.max_labels`` has them
    shuffled before the transform keeps the first ``max_labels`` that stay in the input, so
    the boxes kept are a random subset that changes from epoch to epoch (with the stream
    position that seeds ``rng``). The order is drawn from a generator spawned from ``rng``,
    which draws nothing from ``rng`` itself: the augmentation stays the same draw for draw, and
    an image within the cap is transformed exactly as by ``transform`` alone."""

    def __init__(self, transform: TrainTransform) -> None:
        self.transform = transform
        self.max_labels = transform.max_labels

    def __repr__(self) -> str:
        return f"RandomBoxOrder({self.transform!r})"

    def __call__(
        self, sample: Sample, input_hw: tuple[int, int], rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        if np.count_nonzero(~sample.ignore) > self.max_labels:
            order = spawn(rng).permutation(len(sample.boxes))
            sample = replace(sample, boxes=sample.boxes[order], labels=sample.labels[order],
                             ignore=sample.ignore[order])
        return self.transform(sample, input_hw, rng)


def spawn(rng: np.random.Generator) -> np.random.Generator:
    """A child of ``rng`` (from its seed sequence): draws nothing from ``rng``."""
    try:
        return rng.spawn(1)[0]
    except AttributeError:  # numpy < 1.25: no Generator.spawn
        return np.random.default_rng(rng.bit_generator._seed_seq.spawn(1)[0])


class EvalTransform:
    """Darknet's plain letterbox (:func:`yolov3.images`, as the detector feeds the
    network): the image scaled to fit, centred on grey, no randomness. Same output as
    :class:`TrainTransform`; ``rng`` is accepted and unused."""

    def __init__(self, max_labels: int = MAX_LABELS) -> None:
        self.max_labels = max_labels

    def __repr__(self) -> str:
        return f"EvalTransform(max_labels={self.max_labels})"

    def __call__(
        self,
        sample: Sample,
        input_hw: tuple[int, int],
        rng: np.random.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The letterboxed network input of ``input_hw`` and its targets."""
        image, info = letterbox(sample.image, input_hw)
        targets = place_boxes(sample, (info.scale_x, info.scale_y), (info.pad_x, info.pad_y),
                              input_hw, max_labels=self.max_labels)
        return image, targets
