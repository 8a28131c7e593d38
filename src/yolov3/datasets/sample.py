"""The one record every dataset format yields."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One image and its ground truth, as every dataset format returns it.

    ``image`` is (H, W, 3) uint8 RGB; ``boxes`` is (n, 4) float32 x1, y1, x2, y2 in image pixels;
    ``labels`` is (n,) int64 0-based contiguous class indices; ``ignore`` is (n,) bool, True for
    boxes the metric ignores and training skips (COCO ``iscrowd``, VOC ``difficult``).
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    image_id: int
    file_name: str
    ignore: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __post_init__(self) -> None:
        if self.ignore.shape[0] != self.boxes.shape[0]:
            self.ignore = np.zeros(self.boxes.shape[0], bool)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original image."""
        return int(self.image.shape[0]), int(self.image.shape[1])
