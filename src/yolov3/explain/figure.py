"""Figures of an exact pixel size, drawn with matplotlib's Agg renderer (no display, no pyplot
state) and written as compact palette PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from yolov3.errors import YoloError
from yolov3.fileio import atomic_write
from yolov3.model.cfg import MAX_IMG_SIZE

#: Pixels per inch of a panel of REFERENCE_PANEL pixels; text and lines (sized in points)
#: scale with the panel through the resolution, within 0.6 and 1.5 times.
DPI = 100
REFERENCE_PANEL = 600
#: The smallest picture side that leaves room for titles and labels.
MIN_SIZE = 200
#: The largest panel side: that of the largest network input (a picture's memory, 4 bytes a
#: pixel, grows with the square of its side).
MAX_SIZE = MAX_IMG_SIZE


def check_picture_size(size: int) -> int:
    """``--size``, the side of a picture's panels, from :data:`MIN_SIZE` to :data:`MAX_SIZE`
    pixels; else a :class:`YoloError` saying so (checked before the work that the picture
    shows)."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise YoloError(f"--size {size}: too {'small' if size < MIN_SIZE else 'large'}; a "
                        f"picture's side is {MIN_SIZE} to {MAX_SIZE} pixels (smaller leaves no "
                        "room for its titles; larger takes memory with the square of the side)")
    return size


def new_figure(width: int, height: int, panel: int) -> Figure:
    """An empty figure that renders to exactly ``width`` x ``height`` pixels, with text sized
    for panels of ``panel`` pixels (see :func:`check_picture_size`) and constrained layout
    (titles and labels kept inside)."""
    check_picture_size(panel)
    if min(width, height) < MIN_SIZE:
        raise YoloError(f"a picture of {width}x{height} pixels is too small; "
                        f"use at least {MIN_SIZE} pixels a side")
    dpi = DPI * min(max(panel / REFERENCE_PANEL, 0.6), 1.5)
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def render(fig: Figure) -> np.ndarray:
    """The figure's pixels as (height, width, 3) uint8 RGB."""
    canvas = fig.canvas
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write the figure to ``path`` as a 256-colour PNG (Pillow's fast octree palette, which
    keeps small areas such as colour bars and legend patches true), a fraction of the size of
    a full-colour one for pictures with photos; the file appears whole or not at all."""
    picture = Image.fromarray(render(fig)).quantize(256, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    picture.save(buffer, format="png", optimize=True)
    path = Path(path)
    try:
        with atomic_write(path) as f:
            f.write(buffer.getvalue())
    except OSError as exc:
        raise YoloError(f"{path}: cannot write the picture ({exc.strerror})") from None
    return path
