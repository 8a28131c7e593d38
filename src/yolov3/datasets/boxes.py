"""Checks every format applies to its boxes: inside the image, clipped, not too small."""

from __future__ import annotations

import numpy as np

# A box may overshoot the image by this fraction of the image side (labelling slop); it is
# clipped. Beyond that it is a problem: the label does not belong to this image.
SLACK = 0.01
# DeNA (after darknet) drops boxes narrower or lower than one pixel.
MIN_SIZE = 1.0
# DeNA's ``max_labels`` (darknet's ``[yolo] max`` is 90): training keeps at most this many
# boxes of one image.
MAX_LABELS = 50

OK, INVALID, OUTSIDE = 0, 1, 2


def box_faults(boxes: np.ndarray, sizes_hw: np.ndarray) -> np.ndarray:
    """Per box of (n, 4) x1, y1, x2, y2 pixels in images of (n, 2) or (2,) height, width: OK,
    INVALID (not finite, or x2 < x1 or y2 < y1) or OUTSIDE (beyond the image by more than
    ``SLACK`` of its side)."""
    sizes_hw = np.broadcast_to(np.asarray(sizes_hw, np.float64), (len(boxes), 2))
    wh = sizes_hw[:, ::-1]
    limit = np.concatenate([wh, wh], axis=1)
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        slack = SLACK * limit
        outside = ((boxes < -slack) | (boxes > limit + slack)).any(axis=1)
    return np.where(~finite | inverted, INVALID, np.where(outside, OUTSIDE, OK))


def describe_fault(fault: int, box: np.ndarray, size_hw: tuple[int, int]) -> str:
    """Words for a fault of :func:`box_faults`."""
    x1, y1, x2, y2 = (f"{v:g}" for v in box)
    h, w = size_hw
    if fault == INVALID:
        return f"box x1={x1} y1={y1} x2={x2} y2={y2} is not a box (inverted or not a number)"
    return f"box x1={x1} y1={y1} x2={x2} y2={y2} lies outside the {w}x{h} image"


def describe_small(box: np.ndarray) -> str:
    """Words for a clipped box that :func:`large_enough` drops."""
    x1, y1, x2, y2 = box
    return (f"box x1={x1:g} y1={y1:g} x2={x2:g} y2={y2:g} is {x2 - x1:g}x{y2 - y1:g} pixels "
            f"inside the image, under {MIN_SIZE:g} pixel (zero area); dropped")


def clip_boxes(boxes: np.ndarray, sizes_hw: np.ndarray) -> np.ndarray:
    """(n, 4) x1, y1, x2, y2 clipped to images of (n, 2) or (2,) height, width."""
    sizes_hw = np.broadcast_to(np.asarray(sizes_hw, boxes.dtype), (len(boxes), 2))
    wh = sizes_hw[:, ::-1]
    return np.clip(boxes, 0, np.concatenate([wh, wh], axis=1))


def large_enough(boxes: np.ndarray) -> np.ndarray:
    """Mask of the (n, 4) x1, y1, x2, y2 boxes at least ``MIN_SIZE`` pixels wide and high."""
    return ((boxes[:, 2] - boxes[:, 0]) >= MIN_SIZE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_SIZE)
