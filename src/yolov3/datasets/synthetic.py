"""The built-in demo dataset: coloured shapes on textured backgrounds, generated on the fly.

Every image is a pure function of (seed, split, index): no file is read or written. Each holds
1 to ``max_objects`` shapes of five classes (ellipse, rectangle, triangle, star, cross), each
stretched to an aspect between 1:1.8 and 1.8:1, rotated, sized so that its box's longer side is
15 % to 50 % of the image's shorter side, filled with a saturated, softly shaded colour, and
drawn in order over a background of smooth noise, a gradient, stripes or a checkerboard, with
grey pixel noise on top. A later shape may hide part of an earlier one, at most ``MAX_OCCLUSION`` of
its box. Shapes are anti-aliased (supersampled) polygons that lie wholly inside the image.

Boxes are exact: the tight box of the whole polygon as drawn (its vertex extremes, in continuous
pixel coordinates where pixel (0, 0) covers [0, 1) x [0, 1)), before any occlusion by later
shapes.
"""

from __future__ import annotations

import colorsys
import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.problems import Problems
from yolov3.errors import DataError

SHAPES = ("ellipse", "rectangle", "triangle", "star", "cross")
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_IMAGES = {"train": 4000, "val": 200, "test": 200}
# A shape's box's longer side, as fractions of the image's shorter side.
MIN_SIZE, MAX_SIZE = 0.15, 0.5
MAX_ASPECT = 1.8
# The most of an earlier shape's box that a later shape's box may cover.
MAX_OCCLUSION = 0.4
_PLACEMENT_TRIES = 30
# Shapes are drawn at this many times the resolution, then averaged down (anti-aliasing).
_SUPERSAMPLE = 4
# OpenCV's sub-pixel polygon coordinates: fixed point with this many fractional bits.
_SHIFT = 4


def _unit_polygons() -> dict[str, np.ndarray]:
    """Each class's outline as (k, 2) x, y vertices in [-1, 1]."""
    turn = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    spikes = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
    a = 0.34  # half the width of a cross's arm
    return {
        "ellipse": np.stack([np.cos(turn), np.sin(turn)], 1),
        "rectangle": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float),
        "triangle": np.array([[0, -1], [1, 1], [-1, 1]], float),
        "star": np.stack([radii * np.cos(spikes), radii * np.sin(spikes)], 1),
        "cross": np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1],
                           [-a, a], [-1, a], [-1, -a], [-a, -a]], float),
    }


UNIT_POLYGONS = _unit_polygons()


@dataclass
class Shape:
    """One drawn shape: its class, (k, 2) vertices in image pixels, fill colour (RGB in [0, 1])
    and shading (brightness change per pixel along ``shade_dir``)."""

    label: int
    polygon: np.ndarray
    colour: np.ndarray
    shade: float
    shade_dir: np.ndarray

    @property
    def box(self) -> np.ndarray:
        """The tight x1, y1, x2, y2 box of the polygon."""
        return np.concatenate([self.polygon.min(0), self.polygon.max(0)])


def _covered(boxes: np.ndarray, earlier: np.ndarray) -> np.ndarray:
    """(n, m): the share of each of the (m, 4) ``earlier`` boxes' area that each of the (n, 4)
    ``boxes`` covers."""
    lo = np.maximum(boxes[:, None, :2], earlier[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], earlier[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(2)
    return inter / (earlier[:, 2:] - earlier[:, :2]).prod(1)


def _random_colour(rng: np.random.Generator, sat: tuple[float, float],
                   val: tuple[float, float]) -> np.ndarray:
    """An RGB colour of uniform hue and saturation / value drawn from the given ranges."""
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return np.array(rgb, np.float32)


def draw_shapes(rng: np.random.Generator, hw: tuple[int, int], max_objects: int) -> list[Shape]:
    """The shapes of one image, bottom first: 1 to ``max_objects`` placements (fewer when a
    shape finds no place that keeps the occlusion of earlier ones under ``MAX_OCCLUSION``)."""
    h, w = hw
    side = min(h, w)
    shapes: list[Shape] = []
    boxes = np.zeros((0, 4))
    for _ in range(int(rng.integers(1, max_objects, endpoint=True))):
        label, aspect, angle, size, shade, shade_angle = (
            rng.integers(len(SHAPES)), rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi),
            rng.uniform(MIN_SIZE, MAX_SIZE), rng.uniform(-0.25, 0.25), rng.uniform(0, 2 * np.pi))
        stretch = MAX_ASPECT ** (aspect / 2)
        cos, sin = np.cos(angle), np.sin(angle)
        poly = UNIT_POLYGONS[SHAPES[label]] * [stretch, 1 / stretch] @ [[cos, sin], [-sin, cos]]
        poly -= poly.min(0)
        poly *= size * side / poly.max()
        extent = poly.max(0)
        # Candidate positions, all at once; the first that hides little of the others wins.
        corners = rng.uniform(0, 1, (_PLACEMENT_TRIES, 2)) * ([w, h] - extent)
        candidates = np.concatenate([corners, corners + extent], 1)
        fits = np.nonzero(_covered(candidates, boxes).max(1, initial=0) <= MAX_OCCLUSION)[0]
        colour = _random_colour(rng, (0.5, 1.0), (0.45, 1.0))
        if len(fits):
            box = candidates[fits[0]]
            boxes = np.concatenate([boxes, box[None]])
            shapes.append(Shape(int(label), poly + box[:2], colour, shade / extent.max(),
                                np.array([np.cos(shade_angle), np.sin(shade_angle)])))
    return shapes


def draw_background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """An (H, W, 3) float32 texture in [0, 1]: two muted colours mixed by smooth noise, a linear
    gradient, stripes or a checkerboard, at a random angle and scale."""
    h, w = hw
    base = _random_colour(rng, (0.0, 0.4), (0.15, 0.9))
    other = base + rng.uniform(0.2, 0.6) * (_random_colour(rng, (0.0, 0.5), (0.1, 1.0)) - base)
    kind, angle, period = rng.integers(4), rng.uniform(0, np.pi), rng.uniform(8, 48)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    xs, ys = np.arange(w, dtype=np.float32)[None], np.arange(h, dtype=np.float32)[:, None]
    if kind == 0:  # smooth noise
        cells = int(rng.integers(3, 13))
        coarse = rng.random((cells, cells), np.float32)
        mix = np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)
    elif kind == 1:  # gradient
        along = xs * cos + ys * sin
        mix = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    elif kind == 2:  # stripes
        mix = 0.5 + 0.5 * np.sin((xs * cos + ys * sin) * np.float32(2 * np.pi / period))
    else:  # checkerboard
        cells_along = np.floor((xs * cos + ys * sin) / np.float32(period))
        cells_across = np.floor((ys * cos - xs * sin) / np.float32(period))
        mix = ((cells_along + cells_across) % 2).astype(np.float32)
    return base + mix[..., None] * (other - base)


def paint_shapes(image: np.ndarray, shapes: list[Shape]) -> None:
    """Paint ``shapes`` in order, anti-aliased, onto the (H, W, 3) float32 ``image`` (in place).
    Every shape must lie inside the image."""
    for shape in shapes:
        x0, y0 = np.floor(shape.polygon.min(0)).astype(int)
        x1, y1 = np.minimum(np.ceil(shape.polygon.max(0)).astype(int), image.shape[1::-1])
        # Anti-aliasing by supersampling: the polygon filled at _SUPERSAMPLE times the
        # resolution (OpenCV puts pixel centres at integer coordinates, hence the half-pixel
        # shift), then each pixel's coverage is the share of its sub-pixels inside.
        fine = np.zeros(((y1 - y0) * _SUPERSAMPLE, (x1 - x0) * _SUPERSAMPLE), np.uint8)
        points = ((shape.polygon - [x0, y0]) * _SUPERSAMPLE - 0.5) * (1 << _SHIFT)
        cv2.fillPoly(fine, [np.round(points).astype(np.int32)], 255, shift=_SHIFT)
        coverage = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
        alpha = coverage[..., None].astype(np.float32) * np.float32(1 / 255)
        dx, dy = shape.polygon.mean(0) - [x0, y0]
        light = 1 + shape.shade * ((np.arange(x1 - x0, dtype=np.float32)[None] - dx)
                                   * shape.shade_dir[0]
                                   + (np.arange(y1 - y0, dtype=np.float32)[:, None] - dy)
                                   * shape.shade_dir[1])
        fill = np.clip(shape.colour * light[..., None].astype(np.float32), 0, 1)
        roi = image[y0:y1, x0:x1]
        roi += alpha * (fill - roi)


def render(rng: np.random.Generator, hw: tuple[int, int], shapes: list[Shape]) -> np.ndarray:
    """The (H, W, 3) uint8 RGB image: background, ``shapes`` in order, grey pixel noise."""
    h, w = hw
    image = draw_background(rng, hw)
    paint_shapes(image, shapes)
    # Sensor-like grey noise (one draw per pixel, shared by the channels).
    image += rng.standard_normal((h, w, 1), np.float32) * np.float32(rng.uniform(0, 0.03))
    image *= 255
    image += 0.5
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _image_rng(seed: int, split: str, i: int) -> np.random.Generator:
    """The random stream of image ``i`` of ``split``: its layout, then its pixels."""
    return np.random.default_rng([seed, SPLITS[split], i])


@functools.lru_cache(maxsize=8)
def _layout(seed: int, split: str, n: int, hw: tuple[int, int],
            max_objects: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The boxes and labels of every image of a split, drawn once per process (the same
    datasets are opened again and again by evaluation, training and tests)."""
    layouts = [draw_shapes(_image_rng(seed, split, i), hw, max_objects) for i in range(n)]
    return (tuple(np.array([s.box for s in shapes]).reshape(-1, 4) for shapes in layouts),
            tuple(np.array([s.label for s in shapes], np.int64) for shapes in layouts))


class SyntheticShapes(DetectionDataset):
    """The demo detection dataset (see the module docstring): ``num_images`` images of
    ``image_size`` (an int for square, or (height, width)) of the ``split`` ``train``, ``val``
    or ``test``, each split its own random stream of ``seed``. Images are drawn when asked for;
    the boxes are laid out at construction (cheap: no pixels)."""

    format = "synthetic"

    def __init__(
        self,
        split: str = "train",
        num_images: int | None = None,
        image_size: int | tuple[int, int] = 256,
        seed: int = 0,
        max_objects: int = 5,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"the demo dataset has the splits {', '.join(SPLITS)}, not {split!r}")
        hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if min(hw) < 32 or max_objects < 1:
            raise DataError(f"the demo dataset needs images of at least 32 pixels and at least "
                            f"one object, got {hw} and max_objects={max_objects}")
        n = DEFAULT_IMAGES[split] if num_images is None else num_images
        self.hw, self.seed, self.max_objects = hw, seed, max_objects
        boxes, labels = _layout(seed, split, n, hw, max_objects)
        super().__init__(
            source=Path(f"synthetic-shapes-seed{seed}"),
            split=split,
            names=list(SHAPES),
            category_ids=None,
            files=[Path(split) / f"{i:06d}.png" for i in range(n)],
            image_ids=np.arange(1, n + 1),
            sizes=np.tile(np.array(hw, np.int64), (n, 1)),
            boxes=list(boxes),
            labels=list(labels),
            ignore=[np.zeros(len(b), bool) for b in boxes],
            problems=Problems(),
        )

    def _rng(self, i: int, split: str | None = None) -> np.random.Generator:
        return _image_rng(self.seed, split or self.split, i)

    def shapes(self, i: int, split: str | None = None) -> list[Shape]:
        """The shapes of image ``i`` (of ``split``, default this dataset's)."""
        return draw_shapes(self._rng(i, split), self.hw, self.max_objects)

    def image(self, i: int, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Image ``i`` as (H, W, 3) uint8 RGB, drawn now (``size_hw`` is ignored: the size is
        the dataset's)."""
        if not 0 <= i < len(self):
            raise IndexError(f"image {i} of a {len(self)}-image demo dataset")
        rng = self._rng(i)
        shapes = draw_shapes(rng, self.hw, self.max_objects)
        return render(rng, self.hw, shapes)
