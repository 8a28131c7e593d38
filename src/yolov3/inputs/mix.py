"""The improved training recipe's multi-image augmentation: YOLOv4's / ultralytics' 4-image
mosaic and mixup (Zhang et al., "mixup: Beyond Empirical Risk Minimization"), and
:class:`Mix`, which decides from a stream position's own generator which images of the
dataset take part.

A mosaic is built at the network input size from four samples and is then one more
:class:`Sample`: the darknet transform (jitter, placing, scale, HSV, flip) augments it as it
would a photo. Mixup blends two augmented network inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from yolov3.datasets.sample import Sample
from yolov3.images import letterbox_geometry
from yolov3.inputs.augment import CANVAS_GREY, paste, resize_linear

# The mosaic centre is uniform over this middle range of each side (fractions of the input).
CENTRE_RANGE = (0.25, 0.75)
# A box the mosaic cuts is kept when at least this many pixels wide and high, and when at least
# this share of its area stays visible (ultralytics' box_candidates: 2 px and 10 %; this project
# asks 20 %).
MOSAIC_MIN_SIDE = 2.0
MOSAIC_MIN_VISIBLE = 0.2
# Mixup's blend ratio is drawn from Beta(alpha, alpha) (ultralytics' 32: close to 1/2).
MIXUP_ALPHA = 32.0
# Quadrant k of the mosaic: whether the image lies left of the centre and above it (top-left,
# top-right, bottom-left, bottom-right).
_LEFT = np.array([1, 0, 1, 0])
_ABOVE = np.array([1, 1, 0, 0])


def mosaic_centre(input_hw: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """The mosaic's centre (cx, cy) in input pixels, uniform over the middle of each side
    (:data:`CENTRE_RANGE`): the first two draws of :func:`mosaic` from ``rng``."""
    (in_h, in_w), (lo, hi) = input_hw, CENTRE_RANGE
    return int(rng.uniform(lo * in_w, hi * in_w)), int(rng.uniform(lo * in_h, hi * in_h))


def mosaic(samples: Sequence[Sample], input_hw: tuple[int, int],
           rng: np.random.Generator) -> Sample:
    """YOLOv4's mosaic of four samples on an ``input_hw`` (height, width) grey canvas.

    The centre (cx, cy) is drawn first (:func:`mosaic_centre`). Each image is resized
    (bilinear, half-pixel centres) so that its longer side equals the input's longer side, and
    placed with one corner at the centre: the first ends there (top-left), the second starts
    there along x (top-right), the third along y (bottom-left), the fourth along both
    (bottom-right); what falls outside the canvas is cut. The boxes are scaled and shifted as
    the pixels, clipped to what stays visible of their image, and dropped when under
    :data:`MOSAIC_MIN_SIDE` pixels wide or high or when less than :data:`MOSAIC_MIN_VISIBLE` of
    their area stays visible. Ignored boxes keep their flag.

    Returns a Sample of ``input_hw``: uint8 RGB pixels, boxes in its pixels, the first
    sample's image id and a file name that lists the four files.
    """
    if len(samples) != 4:
        raise ValueError(f"a mosaic takes 4 samples, got {len(samples)}")
    in_h, in_w = input_hw
    cx, cy = mosaic_centre(input_hw, rng)
    side = max(in_h, in_w)
    canvas = np.full((in_h, in_w, 3), CANVAS_GREY, np.uint8)
    fitted = [letterbox_geometry(s.size, (side, side))[:2] for s in samples]
    new_hw = np.array(fitted)  # (4, 2) height, width of each resized image
    x0, y0 = cx - new_hw[:, 1] * _LEFT, cy - new_hw[:, 0] * _ABOVE
    for sample, hw, x, y in zip(samples, fitted, x0.tolist(), y0.tolist(), strict=True):
        paste(canvas, resize_linear(sample.image, hw), x, y)

    counts = [len(s.boxes) for s in samples]
    boxes = np.concatenate([s.boxes for s in samples]).astype(np.float64).reshape(-1, 4)
    scale_xy = new_hw[:, ::-1] / np.array([s.size[::-1] for s in samples])  # (4, 2) sx, sy
    origin = np.stack([x0, y0], 1)
    # Per box: its image's scale, top-left corner and visible part of the canvas.
    scale = np.tile(np.repeat(scale_xy, counts, 0), 2)
    start = np.tile(np.repeat(origin, counts, 0), 2)
    end = start + np.tile(np.repeat(new_hw[:, ::-1], counts, 0), 2)
    placed = np.clip(boxes * scale + start, start, end)  # within its own image
    visible = np.clip(placed, np.maximum(start, 0), np.minimum(end, [in_w, in_h, in_w, in_h]))
    full, kept = _area(placed), _area(visible)
    keep = ((visible[:, 2] - visible[:, 0] >= MOSAIC_MIN_SIDE)
            & (visible[:, 3] - visible[:, 1] >= MOSAIC_MIN_SIDE)
            & (kept >= MOSAIC_MIN_VISIBLE * full))
    labels = np.concatenate([s.labels for s in samples]).astype(np.int64)
    ignore = np.concatenate([s.ignore for s in samples])
    names = ", ".join(s.file_name for s in samples)
    return Sample(canvas, visible[keep].astype(np.float32), labels[keep], samples[0].image_id,
                  f"mosaic of {names}", ignore[keep])


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def mixup(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor],
          rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Mixup of two augmented inputs of the same size, each ``(image (3, H, W), targets
    (n, 5))``: the image ``r * a + (1 - r) * b`` with r ~ Beta(:data:`MIXUP_ALPHA`,
    :data:`MIXUP_ALPHA`) drawn from ``rng``, the targets of both (a's, then b's)."""
    (image_a, targets_a), (image_b, targets_b) = a, b
    if image_a.shape != image_b.shape:
        raise ValueError(f"mixup of inputs of different sizes: {tuple(image_a.shape)} and "
                         f"{tuple(image_b.shape)}")
    r = float(rng.beta(MIXUP_ALPHA, MIXUP_ALPHA))
    return image_a * r + image_b * (1.0 - r), torch.cat([targets_a, targets_b])


def random_subset(targets: Tensor, count: int, rng: np.random.Generator) -> Tensor:
    """At most ``count`` of the (n, 5) ``targets``: a random subset drawn from ``rng`` when
    there are more (darknet's ``randomize_boxes`` before the cap), else all of them, drawing
    nothing."""
    if len(targets) <= count:
        return targets
    return targets[torch.from_numpy(rng.permutation(len(targets))[:count])]


@dataclass(frozen=True)
class MixPlan:
    """What one stream position's input is made of, besides its own image: ``others``, the
    dataset indices of the three other images of its mosaic (empty: not a mosaic), and
    ``partner``, those of its mixup partner (empty: not mixed up; four images, a mosaic, when
    the input is a mosaic, else one)."""

    others: tuple[int, ...] = ()
    partner: tuple[int, ...] = ()


class Mix:
    """How often the training inputs are mosaics and mixups: ``mosaic`` and ``mixup`` are the
    probabilities (0, darknet's, is off), checked by the training config.

    :meth:`plan` decides, from the stream position's mix generator alone, which dataset images
    make up its input, so that a resumed run and any number of workers or ranks see the same
    data. A mixup partner is of the same kind as the main input (as in ultralytics, two mosaics
    are blended): a mosaic of four images drawn for it when the main input is a mosaic, else a
    single image.
    """

    def __init__(self, mosaic: float = 0.0, mixup: float = 0.0) -> None:
        self.mosaic, self.mixup = mosaic, mixup

    def __repr__(self) -> str:
        return f"Mix(mosaic={self.mosaic}, mixup={self.mixup})"

    @property
    def active(self) -> bool:
        """Whether any input is mixed at all (if not, the inputs are darknet's, bit for bit)."""
        return self.mosaic > 0 or self.mixup > 0

    def plan(self, dataset_size: int, rng: np.random.Generator) -> MixPlan:
        """The images mixed into one input, drawn from ``rng`` in this order: whether it is a
        mosaic, its three other images (uniform over the dataset's ``dataset_size`` images),
        whether it is mixed up, its partner's images. A probability of 0 draws nothing."""
        is_mosaic = bool(self.mosaic and rng.random() < self.mosaic)
        others = _indices(rng, dataset_size, 3) if is_mosaic else ()
        if not (self.mixup and rng.random() < self.mixup):
            return MixPlan(others)
        return MixPlan(others, _indices(rng, dataset_size, 4 if is_mosaic else 1))


def _indices(rng: np.random.Generator, dataset_size: int, count: int) -> tuple[int, ...]:
    return tuple(int(i) for i in rng.integers(dataset_size, size=count))
