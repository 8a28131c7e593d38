"""Pictures of what a training run learns from (as ultralytics leaves them): a batch of network
inputs with their target boxes (``train_batch0.jpg``: what the network is fed, augmentation,
mosaic and mixup included), and the training labels (``labels.png``: boxes per class, and the
widths and heights of the boxes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.ops import box_convert

from yolov3.fileio import atomic_write
from yolov3.inference.draw import class_colour

# The batch picture is scaled down to at most this many pixels along its longer side.
MAX_PICTURE_SIDE = 2048
# The white of the lines between the batch picture's tiles and of its empty tiles.
_WHITE = 255
# Bins of the box width-height histogram along each axis (fractions of the image, 0 to 1).
WH_BINS = 50


def grid_shape(count: int) -> tuple[int, int]:
    """(rows, columns) of the near-square grid of ``count`` tiles: ceil(sqrt(count)) columns."""
    cols = max(math.ceil(math.sqrt(count)), 1)
    return max(math.ceil(count / cols), 1), cols


def batch_grid(images: Tensor, max_images: int = 16) -> np.ndarray:
    """The first ``max_images`` of the (B, 3, H, W) float ``images`` in [0, 1] as one
    (rows * H, cols * W, 3) uint8 RGB picture, row by row on a near-square grid
    (:func:`grid_shape`), a white line along the top and left of every tile but the first row's and
    column's, empty tiles white."""
    n, _, h, w = images[:max_images].shape
    rows, cols = grid_shape(n)
    tiles = np.full((rows * cols, h, w, 3), _WHITE, np.uint8)
    tiles[:n] = images[:n].clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
    grid = tiles.reshape(rows, cols, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(rows * h,
                                                                                cols * w, 3)
    grid[h::h] = _WHITE
    grid[:, w::w] = _WHITE
    return grid


def save_batch_picture(images: Tensor, targets: Sequence[Tensor], names: Sequence[str],
                       path: Path, max_images: int = 16) -> None:
    """``path`` (its format from its suffix: ``train_batch0.jpg``): the first ``max_images``
    network inputs of a training batch on a grid (:func:`batch_grid`), scaled down to
    :data:`MAX_PICTURE_SIDE` when larger, each with its targets drawn, an outline in the colour
    of its class (:func:`~yolov3.inference.draw.class_colour`) named by ``names``.

    ``images`` is (B, 3, H, W) in [0, 1]; ``targets[i]`` (n_i, 5) ``class, xc, yc, w, h``
    normalised to the input, as the loader yields them."""
    n, _, h, w = images[:max_images].shape
    if n == 0:
        raise ValueError("a batch picture of an empty batch")
    grid = batch_grid(images, max_images)
    factor = min(1.0, MAX_PICTURE_SIDE / max(grid.shape[:2]))
    picture = Image.fromarray(grid)
    if factor < 1:
        picture = picture.resize((round(grid.shape[1] * factor), round(grid.shape[0] * factor)),
                                 Image.Resampling.BILINEAR)
    cols = grid_shape(n)[1]
    kept = list(targets[:n])
    rows = torch.cat([t.reshape(-1, 5) for t in kept]).double()
    tile = torch.repeat_interleave(torch.arange(len(kept)), torch.tensor([len(t) for t in kept]))
    origin = torch.stack([tile % cols * w, tile // cols * h], 1).repeat(1, 2)
    boxes = (box_convert(rows[:, 1:], "cxcywh", "xyxy") * torch.tensor([w, h, w, h]) + origin)
    font = ImageFont.load_default(size=max(8, round(min(h, w) * factor / 30)))
    _draw_boxes(picture, (boxes * factor).round().long().tolist(), rows[:, 0].long().tolist(),
                names, font, max(1, round(2 * factor)))
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_write(path) as f:
        picture.save(f, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _draw_boxes(picture: Image.Image, boxes: list[list[int]], labels: list[int],
                names: Sequence[str], font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
                width: int) -> None:
    """Each box (pixel edges x1, y1, x2, y2) outlined ``width`` pixels wide inside its edges, its
    class name on a tag of its colour at its top-left corner."""
    canvas = ImageDraw.Draw(picture)
    for (x1, y1, x2, y2), label in zip(boxes, labels, strict=True):
        colour = class_colour(label)
        canvas.rectangle((x1, y1, max(x2 - 1, x1), max(y2 - 1, y1)), outline=colour, width=width)
        name = names[label] if 0 <= label < len(names) else str(label)
        left, top, right, bottom = canvas.textbbox((x1, y1), name, font=font)
        canvas.rectangle((left, top, right, bottom), fill=colour)
        canvas.text((x1, y1), name, fill=(0, 0, 0), font=font)


def save_label_picture(labels: np.ndarray, wh: np.ndarray, names: Sequence[str],
                       path: Path) -> None:
    """``path`` (PNG): the training boxes per class (bars named by ``names``, readable for up to
    about 80 classes) and a 2-D histogram (log colour scale) of the boxes' widths against their
    heights as fractions of their image (``DetectionDataset.training_boxes()`` gives
    ``labels`` (n,) and ``wh`` (n, 2))."""
    labels, wh = np.asarray(labels, np.int64), np.asarray(wh, np.float64).reshape(-1, 2)
    if len(labels) != len(wh):
        raise ValueError(f"{len(labels)} labels for {len(wh)} box sizes")
    counts = np.bincount(labels, minlength=len(names))
    bars_width = max(4.0, 0.16 * len(counts))  # inches: 80 names side by side stay readable
    fig = Figure(figsize=(bars_width + 6.0, 5.0), dpi=100)
    bars_ax, wh_ax = fig.subplots(1, 2, width_ratios=[bars_width, 6.0])
    tags = [names[k] if k < len(names) else str(k) for k in range(len(counts))]
    bars_ax.bar(np.arange(len(counts)), counts, color=[np.array(class_colour(k)) / 255
                                                       for k in range(len(counts))])
    bars_ax.set_xticks(np.arange(len(counts)), tags, rotation=90,
                       fontsize=8 if len(counts) > 20 else 10)
    bars_ax.set(ylabel="boxes", xlim=(-0.6, len(counts) - 0.4),
                title=f"{len(labels)} boxes, {np.count_nonzero(counts)} of {len(counts)} "
                      "classes")
    if len(wh):
        *_, image = wh_ax.hist2d(wh[:, 0], wh[:, 1], bins=WH_BINS, range=[[0, 1], [0, 1]],
                                 norm=LogNorm(), cmap="viridis")
        fig.colorbar(image, ax=wh_ax, label="boxes")
    wh_ax.set(xlabel="width / image width", ylabel="height / image height", xlim=(0, 1),
              ylim=(0, 1), aspect="equal", title="box sizes")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
