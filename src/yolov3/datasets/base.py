"""The interface every dataset format implements, and the storage they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import box_convert

from yolov3.datasets.boxes import describe_small, large_enough
from yolov3.datasets.problems import Problems
from yolov3.datasets.sample import Sample
from yolov3.errors import DataError
from yolov3.images import image_size, load_image


@dataclass
class Annotation:
    """The ground truth of one image, without its pixels.

    ``size`` is (height, width); ``boxes`` (n, 4) float32 x1, y1, x2, y2 pixels; ``labels`` (n,)
    int64 contiguous class indices; ``ignore`` (n,) bool (COCO ``iscrowd``, VOC ``difficult``).
    """

    image_id: int
    file: Path
    size: tuple[int, int]
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray


@dataclass
class SourcePaths:
    """What a dataset is read from, so that nothing writes over it (``yolov3 data convert``):
    ``files`` are its description, annotation, label, list and names files and its images
    (also those looked for and missing, such as the label file of an image without objects,
    and the images skipped); ``folders`` are the folders it lists (images found by walking
    them, VOC's annotations), in which a new file would change the dataset; ``roots`` the
    dataset's own folders (that of its description, the root its paths are relative to), in
    which no conversion's output belongs."""

    files: set[Path] = field(default_factory=set)
    folders: set[Path] = field(default_factory=set)
    roots: set[Path] = field(default_factory=set)

    def update(self, other: SourcePaths) -> None:
        self.files |= other.files
        self.folders |= other.folders
        self.roots |= other.roots


class DetectionDataset(Dataset):
    """Images with boxes, whatever the format on disk: ``dataset[i]`` is a :class:`Sample`.

    ``names`` are the class names by contiguous index; ``category_ids[k]`` is the id that
    outputs give class ``k`` (``category_id`` in predictions.json, the per-class table, the
    confusion matrix): a COCO JSON's own category id, else ``k`` itself, the 0-based class
    index of YOLO txt labels and of ``detect``'s outputs (docs/datasets.md); ``problems`` lists
    the labels that were skipped; :meth:`source_paths` the files and folders it is read from.
    ``annotations(i)`` gives the ground truth without decoding the image. Boxes are stored
    packed (one array for all images) so that data-loader workers share them cheaply; a reader
    may pass them packed (``offsets``: image i's are rows ``offsets[i]:offsets[i + 1]``).
    """

    format: ClassVar[str] = ""
    # Boxes stored as cx, cy, w, h fractions of the image size (YOLO txt) instead of pixels.
    normalised: ClassVar[bool] = False

    def __init__(
        self,
        *,
        source: Path,
        split: str,
        names: list[str],
        category_ids: Sequence[int] | None,
        files: list[Path],
        image_ids: np.ndarray,
        sizes: np.ndarray | None,
        boxes: list[np.ndarray] | np.ndarray,
        labels: list[np.ndarray] | np.ndarray,
        ignore: list[np.ndarray] | np.ndarray,
        problems: Problems,
        offsets: np.ndarray | None = None,
    ) -> None:
        self.source, self.split, self.names = source, split, names
        self.category_ids = list(range(len(names)) if category_ids is None else category_ids)
        self.problems = problems
        self.files = files
        # What the reader read besides ``files`` and ``source`` (kept small: workers get it).
        self.sources = SourcePaths()
        self.image_ids = np.asarray(image_ids, np.int64)
        # (height, width) per image; 0 where unknown until the image is read (YOLO txt).
        self.sizes = np.zeros((len(files), 2), np.int64) if sizes is None else sizes
        if offsets is None:  # one array per image
            counts = [len(b) for b in boxes]
            offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            boxes = np.concatenate([np.zeros((0, 4)), *boxes])
            labels = np.concatenate([np.zeros(0, np.int64), *labels])
            ignore = np.concatenate([np.zeros(0, bool), *ignore])
        # else packed already: image i's are rows offsets[i]:offsets[i + 1]
        self._offsets = np.asarray(offsets, np.int64)
        # float64: YOLO's fractions must come back to the very same pixels.
        self._boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        self._labels = np.asarray(labels, np.int64)
        self._ignore = np.asarray(ignore, bool)
        # Whether the labels came from the label cache (see yolov3.datasets.cache) unparsed.
        self.from_cache = False
        self._small_noted: set[int] = set()  # images whose sub-pixel boxes are in the notes

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.source}, split={self.split!r}, "
                f"{len(self)} images, {len(self.names)} classes, {len(self.problems)} problems)")

    @property
    def num_boxes(self) -> int:
        return len(self._boxes)

    def source_paths(self) -> SourcePaths:
        """Every file and folder the dataset is read from: ``source`` (the description or
        annotation file, or the root folder) and its folder, the images, and :attr:`sources`
        (the formats add the files and folders their readers looked at)."""
        files = {*self.files, *self.sources.files}
        roots = {*self.sources.roots, self.source}
        if not self.source.is_dir():
            files.add(self.source)
            roots = {*self.sources.roots, self.source.parent}
        return SourcePaths(files, set(self.sources.folders), roots)

    def category_to_label(self) -> dict[int, int]:
        """The dataset's category id -> contiguous class index."""
        return {c: k for k, c in enumerate(self.category_ids)}

    def labels(self, i: int) -> np.ndarray:
        """The class indices of image ``i``'s boxes as read, without its size (YOLO boxes
        under one pixel at that size are among them; :meth:`annotations` drops those)."""
        return self._labels[self._offsets[i] : self._offsets[i + 1]]

    def training_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """The class (n,) int64 and the width and height (n, 2) float64, as fractions of their
        image's width and height, of every box that training learns from (not ignored), from
        the packed labels without decoding an image: YOLO's fractions as they are (sub-pixel
        boxes included), pixel boxes over the image sizes the dataset knows (a header read for
        an image whose size it does not)."""
        offsets, boxes = self._offsets, self._boxes
        keep = ~self._ignore
        if self.normalised:  # cx, cy, w, h fractions
            wh = boxes[:, 2:4]
        else:
            sizes = np.array(self.sizes, np.float64)
            for i in np.flatnonzero((sizes[:, 0] <= 0) & (np.diff(offsets) > 0)):
                sizes[i] = self.image_hw(i)
            per_box = np.repeat(sizes[:, ::-1], np.diff(offsets), axis=0)  # width, height
            wh = (boxes[:, 2:4] - boxes[:, 0:2]) / per_box
        return self._labels[keep], wh[keep]

    def image_hw(self, i: int) -> tuple[int, int]:
        """(height, width) of image ``i`` without decoding it: the size the dataset knows, else
        its file header (a :class:`DataError` for a file that is not a readable image)."""
        size = tuple(int(v) for v in self.sizes[i])
        return size if size[0] > 0 else image_size(self.files[i])

    def annotations(self, i: int, image_hw: tuple[int, int] | None = None) -> Annotation:
        """The ground truth of image ``i`` without decoding it. ``image_hw`` is the image's
        (height, width) when the caller already knows it (YOLO labels need it; otherwise the
        file header is read)."""
        lo, hi = self._offsets[i], self._offsets[i + 1]
        boxes, labels, ignore = self._boxes[lo:hi], self._labels[lo:hi], self._ignore[lo:hi]
        size = image_hw if image_hw and self.sizes[i][0] <= 0 else self.image_hw(i)
        if self.normalised:
            h, w = size
            boxes = box_convert(torch.from_numpy(boxes), "cxcywh", "xyxy").numpy()
            boxes = boxes * np.array([w, h, w, h], np.float64)
            keep = large_enough(boxes)
            if not keep.all() and i not in self._small_noted:  # known once the size is
                self._small_noted.add(i)
                for k in np.flatnonzero(~keep):
                    self.problems.note(f"{self.files[i]} ({w}x{h}): {describe_small(boxes[k])}")
            boxes, labels, ignore = boxes[keep], labels[keep], ignore[keep]
        return Annotation(int(self.image_ids[i]), self.files[i], size, boxes.astype(np.float32),
                          labels, ignore)

    def image(self, i: int, size_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Image ``i`` as (H, W, 3) uint8 RGB. When the annotation declares a size that only the
        stored orientation matches (an EXIF rotation the labeller did not see), the stored
        pixels are returned, so that the boxes fit."""
        path = self.files[i]
        image = load_image(path)
        if size_hw is None or image.shape[:2] == tuple(size_hw):
            return image
        raw = load_image(path, exif_transpose=False)
        if raw.shape[:2] != tuple(size_hw):
            h, w = size_hw
            raise DataError(f"{path}: the image is {image.shape[1]}x{image.shape[0]} but its "
                            f"annotation ({self.source}) says {w}x{h}")
        return raw

    def read_image(self, i: int) -> np.ndarray:
        """Image ``i`` as (H, W, 3) uint8 RGB, in the orientation its annotation declares."""
        declared = tuple(int(v) for v in self.sizes[i])
        return self.image(i, declared if declared[0] > 0 else None)

    @property
    def pixels(self) -> Sequence[np.ndarray]:
        """The images alone, decoded on access: ``dataset.pixels[i]`` is :meth:`read_image`."""
        return _Pixels(self)

    def __getitem__(self, i: int) -> Sample:
        image = self.read_image(i)
        ann = self.annotations(i, image.shape[:2])
        return Sample(image, ann.boxes, ann.labels, ann.image_id, str(ann.file), ann.ignore)



class _Pixels(Sequence[np.ndarray]):
    """A dataset's images without their labels (see :attr:`DetectionDataset.pixels`)."""

    def __init__(self, dataset: DetectionDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.dataset.read_image(i)


def valid_size(height: float, width: float) -> bool:
    """Whether an annotation's declared (height, width) can be an image's: 1 to 2**31 - 1
    pixels each (finite; fractions are truncated by the readers)."""
    return all(1 <= v < 2**31 for v in (height, width))


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """Indices of ``count`` of ``total`` items spread evenly over them, the first and the last
    included (all of them when ``count >= total``; none of none): a sample of a set that does
    not favour its start. At least one apart, so the rounded indices are distinct."""
    return np.linspace(0, total - 1, min(count, total)).round().astype(np.int64)


def image_ids(stems: Sequence[str]) -> np.ndarray:
    """Integer image ids for files named ``stems``: the numbers themselves when every stem is a
    distinct number (``000000397133.jpg`` is COCO's image 397133), else 1, 2, ... in order."""
    if stems and all(s.isdigit() for s in stems):
        ids = np.array([int(s) for s in stems], dtype=np.int64)
        if len(np.unique(ids)) == len(ids):
            return ids
    return np.arange(1, len(stems) + 1, dtype=np.int64)
