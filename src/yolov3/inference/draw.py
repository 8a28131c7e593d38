"""Annotated pictures: boxes, class names and scores, one colour per class."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from yolov3.inference.detector import Detections


def class_colour(index: int) -> tuple[int, int, int]:
    """A stable, well-separated colour for class ``index`` (golden-ratio hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray, dets: Detections, names: Sequence[str]
) -> Image.Image:
    """A copy of the RGB ``image`` with each detection drawn and labelled ``name score``."""
    picture = Image.fromarray(image).convert("RGB")
    canvas = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, round(min(picture.size) / 40)))
    width = max(2, round(min(picture.size) / 200))
    for box, score, label in zip(
        dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), strict=True
    ):
        colour = class_colour(label)
        name = names[label] if label < len(names) else str(label)
        canvas.rectangle(box, outline=colour, width=width)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = canvas.textbbox((box[0], box[1]), text, font=font)
        y = box[1] - (bottom - top) - 2 * width if box[1] > bottom - top + 2 * width else box[1]
        canvas.rectangle((left, y, right + 2 * width, y + bottom - top + 2 * width), fill=colour)
        canvas.text((box[0] + width, y + width - (top - box[1])), text, fill=(0, 0, 0), font=font)
    return picture
