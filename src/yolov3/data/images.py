"""Image files of a dataset: which files are images, their size without decoding, their ids."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from yolov3.errors import DataError
from yolov3.inference.letterbox import PIL_ERRORS

# EXIF orientations that turn the stored picture by 90 degrees (what ``exif_transpose`` undoes).
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


@cache
def image_extensions() -> frozenset[str]:
    """Every file extension Pillow can open (lower case, with the dot)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (any case: ``.JPG`` counts)."""
    return path.suffix.lower() in image_extensions()


def list_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively), sorted by path."""
    return sorted(p for p in folder.rglob("*") if is_image_file(p) and p.is_file())


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the image as :func:`yolov3.inference.load_image` returns it (EXIF
    orientation applied), read from the file header without decoding the pixels."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
    except PIL_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return height, width


def valid_size(height: float, width: float) -> bool:
    """Whether an annotation's declared (height, width) can be an image's: 1 to 2**31 - 1
    pixels each (finite; fractions are truncated by the readers)."""
    return all(1 <= v < 2**31 for v in (height, width))


def image_ids(stems: Sequence[str]) -> np.ndarray:
    """Integer image ids for files named ``stems``: the numbers themselves when every stem is a
    distinct number (``000000397133.jpg`` is COCO's image 397133), else 1, 2, ... in order."""
    if stems and all(s.isdigit() for s in stems):
        ids = np.array([int(s) for s in stems], dtype=np.int64)
        if len(np.unique(ids)) == len(ids):
            return ids
    return np.arange(1, len(stems) + 1, dtype=np.int64)
