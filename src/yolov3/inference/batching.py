"""Images to network inputs in batches: decoded and letterboxed ahead of the model (in
data-loader workers when asked), the one way ``detect``, ``val`` and :class:`Detector` feed the
network. An image that cannot be read is reported in its batch instead of stopping the run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from yolov3.errors import DataError
from yolov3.images import Letterbox, letterbox


@dataclass
class LetterboxedBatch:
    """A batch of letterboxed network inputs: ``inputs`` (n, 3, H, W) of the readable images,
    ``indices`` their positions in the source, ``letterboxes`` the mapping of each back to its
    image pixels, ``images`` the decoded pictures (when kept), and ``failures`` the
    ``(position, message)`` of each image that could not be read."""

    indices: list[int]
    inputs: Tensor
    letterboxes: list[Letterbox]
    images: list[np.ndarray] | None
    failures: list[tuple[int, str]] = field(default_factory=list)


class LetterboxedImages(Dataset):
    """``images[i]`` (an (H, W, 3) uint8 RGB array; a :class:`DataError` for an unreadable one)
    letterboxed to ``input_hw``: item ``i`` is ``(i, input, letterbox, image)``, or
    ``(i, None, message, None)`` when the image cannot be read. With ``keep_images`` the
    decoded picture comes along (to draw on), else ``None``."""

    def __init__(
        self, images: Sequence[np.ndarray], input_hw: tuple[int, int], keep_images: bool = False
    ) -> None:
        self.images, self.input_hw, self.keep_images = images, input_hw, keep_images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, Letterbox | str, np.ndarray | None]:
        try:
            image = self.images[i]
        except DataError as exc:
            return i, None, str(exc), None
        x, lb = letterbox(image, self.input_hw)
        return i, x, lb, image if self.keep_images else None


def collate_letterboxed(
    items: Sequence[tuple[int, Tensor | None, Letterbox | str, np.ndarray | None]],
) -> LetterboxedBatch:
    """One :class:`LetterboxedBatch` from :class:`LetterboxedImages` items."""
    good = [it for it in items if it[1] is not None]
    inputs = torch.stack([it[1] for it in good]) if good else torch.zeros(0, 3, 0, 0)
    keep = bool(good) and good[0][3] is not None
    return LetterboxedBatch(
        indices=[it[0] for it in good],
        inputs=inputs,
        letterboxes=[it[2] for it in good],
        images=[it[3] for it in good] if keep else None,
        failures=[(it[0], it[2]) for it in items if it[1] is None],
    )


def letterboxed_batches(
    images: Sequence[np.ndarray],
    input_hw: tuple[int, int],
    batch_size: int = 8,
    workers: int = 0,
    keep_images: bool = False,
) -> DataLoader:
    """Batches (:class:`LetterboxedBatch`) of ``images`` in order, decoded and letterboxed by
    ``workers`` processes ahead of the model (0: in this process)."""
    return DataLoader(LetterboxedImages(images, input_hw, keep_images), batch_size=batch_size,
                      num_workers=workers, collate_fn=collate_letterboxed)
