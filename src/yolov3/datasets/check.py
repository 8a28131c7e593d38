"""``yolov3 data check``: read every image and label of a dataset and report what is wrong.

The dataset readers already record, for each split, the labels they cannot use: malformed lines
or files, class indices out of range, boxes outside the image or inverted, labels whose image
file is missing, and boxes of zero area (dropped). The check reports those and adds what only
decoding every image, or looking at the files on disk, shows:

- unreadable or truncated images: every image is decoded in full (a truncated JPEG or PNG
  fails only there, not when its header is read). A JPEG cut short is read as far as it goes,
  as darknet and OpenCV read it: it is reported with the share of its pixels past the cut
  (grey), and training and detection use it;
- images without labels: a YOLO image without a ``.txt`` (an empty file marks an image without
  objects), a VOC image without an ``.xml`` of its name (in the annotations folder or one of
  its sub-folders), an image in a COCO images folder that the JSON does not list;
- labels without images: a YOLO ``.txt`` in a ``labels/`` folder with no image of its name in
  the matching ``images/`` folder (labels kept beside their images are not searched);
- duplicate boxes: two boxes of the same class in one image with IoU above
  :data:`DUPLICATE_IOU` (0.95), the same object labelled twice;
- EXIF-rotated images whose labels fit one orientation only: the image's EXIF orientation
  (5 to 8) turns its stored pixels by 90 degrees, so viewers show it with width and height
  swapped, and the size its annotation declares (COCO ``width``/``height``, VOC ``<size>``)
  equals one of the two orientations and not the other. Labels on the turned view (the size
  viewers show) are misplaced by every reader that ignores EXIF (darknet, OpenCV with
  ``IMREAD_IGNORE_ORIENTATION``); labels on the stored pixels are misplaced by every reader that
  applies it (Pillow's ``exif_transpose``, OpenCV's default). Box extents add no evidence: COCO
  and VOC boxes are already checked against the declared size, and YOLO's fractions fit either
  orientation, so YOLO labels of such images cannot be tied to one (yolov3 reads them on the
  turned view, as viewers show it);
- images whose declared size they have in neither orientation;
- COCO annotation ids that are repeated (files merged from several whose ids all start at 1)
  or not positive integers, which pycocotools would mix up, and image files listed under
  several image ids (both found by the reader);
- the class histogram: boxes per class and split;
- images with more boxes than training keeps of one image (:data:`MAX_LABELS`, DeNA's 50:
  each epoch takes a random subset of them).

Square images, and EXIF orientations that only mirror or turn by 180 degrees (2 to 4), keep
their width and height, so their labels cannot be tied to an orientation and are not reported.

Images and labels shared by several splits are checked once per split, each finding reported
once.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.boxes import MAX_LABELS
from yolov3.datasets.coco import read_coco_json
from yolov3.datasets.open import check_images_option, dataset_splits, open_dataset
from yolov3.datasets.problems import (
    BOX,
    CLASS,
    CUT_SHORT,
    DUPLICATE,
    EXIF,
    MALFORMED,
    NO_IMAGE,
    NO_LABEL,
    REPEATED_ID,
    REPEATED_IMAGE,
    SIZE,
    UNREADABLE,
    ZERO_AREA,
)
from yolov3.datasets.voc import VocDataset, annotation_files, find_voc_folders
from yolov3.datasets.yolo_txt import label_path
from yolov3.errors import DataError
from yolov3.fileio import atomic_write
from yolov3.images import (
    DecodedImage,
    decode_image,
    image_size,
    is_image_file,
    list_images,
    missing_share,
)

# Two boxes of one class overlapping more than this are one object labelled twice.
DUPLICATE_IOU = 0.95

# Each kind of problem: what it is (the report's heading) and what to do about it.
KINDS: dict[str, tuple[str, str]] = {
    UNREADABLE: ("unreadable or truncated images",
                 "export the image again, or remove it and its label"),
    CUT_SHORT: ("JPEG images cut short (read as far as they go, as darknet and OpenCV read "
                "them)",
                "export or copy the image again; remove it if much of it is grey"),
    NO_LABEL: ("images without labels",
               "add the label (an empty YOLO .txt marks an image without objects), or remove "
               "the image"),
    NO_IMAGE: ("labels without images", "add the image, or remove the label"),
    MALFORMED: ("malformed labels",
                "fix the file or line (YOLO txt: UTF-8, 'class xc yc w h' per line)"),
    CLASS: ("class indices out of range",
            "use one of the dataset's classes, or add the class to its names"),
    BOX: ("boxes outside the image or not boxes",
          "fix the coordinates (YOLO txt: fractions 0..1 of the image's width and height)"),
    ZERO_AREA: ("boxes of zero area (dropped in training)",
                "remove the box or draw it again"),
    DUPLICATE: (f"duplicate boxes (same class, IoU > {DUPLICATE_IOU:g})",
                "remove one box of each pair"),
    EXIF: ("EXIF-rotated images whose labels fit one orientation only",
           "save the image in the labels' orientation without an EXIF orientation tag "
           "(PIL.ImageOps.exif_transpose when the labels are on the turned view; drop the tag "
           "when they are on the stored pixels)"),
    SIZE: ("images whose size differs from their annotation",
           "fix the annotation's width and height, or replace the image"),
    REPEATED_ID: ("repeated or unusable COCO annotation ids (renumbered for the metric)",
                  "number the annotations 1, 2, ... again (files merged from several whose ids "
                  "all start at 1 repeat them)"),
    REPEATED_IMAGE: ("image files listed under several COCO image ids (the first kept)",
                     "keep one entry per image and give it all its annotations"),
}


@dataclass
class SplitSummary:
    """What one split holds: the images and boxes the readers accepted, boxes per class."""

    split: str
    format: str
    images: int
    boxes: int
    histogram: dict[str, int]
    over_cap: int = 0  # images with more than MAX_LABELS boxes that training uses


def box_counts(dataset: DetectionDataset) -> np.ndarray:
    """The boxes per image that training uses (those not marked ignore), from the labels alone
    (no image is read): from :meth:`~DetectionDataset.annotations` where the dataset knows the
    image sizes (COCO, VOC, the demo), else (YOLO txt, whose boxes are never ignored) every box
    the label file holds."""
    counts = np.zeros(len(dataset), np.int64)
    for i in range(len(dataset)):
        if dataset.sizes[i][0] > 0:
            counts[i] = int(np.count_nonzero(~dataset.annotations(i).ignore))
        else:
            counts[i] = len(dataset.labels(i))
    return counts


def over_cap_message(count: int, max_labels: int = MAX_LABELS) -> str:
    """The line that says how many training images are cut to ``max_labels`` boxes."""
    return (f"{count} training images have more than {max_labels} boxes; each epoch keeps a "
            f"random {max_labels} of them (data.max_labels)")


class CheckReport:
    """The findings of :func:`check_dataset`, by kind (each message once, in order found)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.splits: list[SplitSummary] = []
        self.found: dict[str, dict[str, None]] = {kind: {} for kind in KINDS}

    def add(self, kind: str, message: str) -> None:
        self.found[kind][message] = None

    @property
    def problems(self) -> int:
        return sum(len(messages) for messages in self.found.values())

    def messages(self, kind: str) -> list[str]:
        return list(self.found[kind])

    def text(self, examples: int = 5) -> str:
        """The printable report: per split the images, boxes and class histogram; per kind of
        problem its count, what to do and the first ``examples`` messages."""
        lines = [f"dataset {self.source}"]
        for s in self.splits:
            lines.append(f"{s.split} ({s.format}): {s.images} images, {s.boxes} boxes")
            counts = ", ".join(f"{name} {n}" for name, n in s.histogram.items())
            lines += textwrap.wrap(f"boxes per class: {counts}", 96, initial_indent="  ",
                                   subsequent_indent="    ")
            if s.over_cap:
                lines.append(f"  {s.over_cap} images have more than {MAX_LABELS} boxes; each "
                             f"epoch keeps a random {MAX_LABELS} of them (data.max_labels) "
                             "when they are trained on")
        for kind, (title, todo) in KINDS.items():
            found = self.messages(kind)
            lines.append(f"{len(found):6d}  {title}")
            if found:
                lines.append(f"        what to do: {todo}")
                lines += [f"        {m}" for m in found[:examples]]
                if len(found) > examples:
                    lines.append(f"        ... and {len(found) - examples} more")
        lines.append(f"{self.problems} problem(s) found" if self.problems else
                     "no problems found")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Every finding (not only the first few), for ``--fix-report``."""
        return {
            "dataset": self.source,
            "splits": [asdict(s) for s in self.splits],
            "problems": {kind: {"title": title, "what_to_do": todo,
                                "messages": self.messages(kind)}
                         for kind, (title, todo) in KINDS.items()},
            "total": self.problems,
        }

    def write(self, path: str | Path) -> None:
        with atomic_write(path) as f:
            f.write(json.dumps(self.to_dict(), indent=1).encode())


def duplicate_pairs(boxes: np.ndarray, labels: np.ndarray,
                    iou_thresh: float = DUPLICATE_IOU) -> np.ndarray:
    """(k, 3) rows ``i, j, iou`` (i < j) of boxes (n, 4) x1, y1, x2, y2 of the same class whose
    IoU exceeds ``iou_thresh``."""
    b = torch.from_numpy(np.asarray(boxes, np.float32)).reshape(-1, 4)
    iou = box_iou(b, b).numpy()
    same = labels[:, None] == labels[None, :]
    i, j = np.nonzero(np.triu(same & (iou > iou_thresh), k=1))
    return np.stack([i, j, iou[i, j]], axis=1)


def orientation_problem(declared_hw: tuple[int, int] | None, stored_hw: tuple[int, int],
                        shown_hw: tuple[int, int]) -> tuple[str, str] | None:
    """(kind, words) when the annotation's declared (height, width) ties its labels to one
    orientation of an EXIF-rotated image (``EXIF``) or fits neither (``SIZE``); ``stored_hw``
    is the size of the pixels as stored, ``shown_hw`` as viewers show them (EXIF applied)."""
    if declared_hw is None or declared_hw == stored_hw == shown_hw:
        return None
    (dh, dw), (sh, sw), (vh, vw) = declared_hw, stored_hw, shown_hw
    turned = (f"its EXIF orientation turns the stored {sw}x{sh} pixels into the {vw}x{vh} "
              "picture that viewers show")
    if stored_hw != shown_hw and declared_hw == shown_hw:
        return EXIF, (f"{turned}, and the annotation's {dw}x{dh} size puts the boxes on that "
                      "turned view: readers that ignore EXIF (darknet) misplace them")
    if stored_hw != shown_hw and declared_hw == stored_hw:
        return EXIF, (f"{turned}, but the annotation's {dw}x{dh} size puts the boxes on the "
                      "stored pixels: viewers and readers that apply EXIF misplace them")
    return SIZE, f"the annotation says {dw}x{dh} but the image is {vw}x{vh}"


@dataclass(frozen=True)
class Inspected:
    """What decoding an image in full shows: its (height, width) as stored and as shown (EXIF
    applied), and for a JPEG cut short what it lost (else None)."""

    stored: tuple[int, int]
    shown: tuple[int, int]
    cut_short: str | None


def _loss(decoded: DecodedImage) -> str:
    """What a JPEG cut short lost, in words."""
    lost = f"{missing_share(decoded.pixels):.1%} of its pixels, past the cut, are grey"
    if decoded.progressive:  # its coarse scans come first: the cut takes the finer ones
        lost += " (a progressive JPEG: the finer detail of the whole picture is missing too)"
    return lost


def _inspect(path: Path) -> Inspected | str:
    """What decoding the image at ``path`` in full shows, or why it cannot be read."""
    try:
        decoded = decode_image(path, exif_transpose=False)
        stored = (int(decoded.pixels.shape[0]), int(decoded.pixels.shape[1]))
        return Inspected(stored, image_size(path),
                         _loss(decoded) if decoded.cut_short else None)
    except DataError as exc:
        return str(exc)


def _where(dataset: DetectionDataset, i: int) -> str:
    """The label of image ``i``: its YOLO .txt or VOC .xml, or its entry in a COCO JSON."""
    file = dataset.files[i]
    if dataset.format == "yolo":
        return str(label_path(file))
    if isinstance(dataset, VocDataset):
        return dataset.xml_files[i]
    return f"{dataset.source}: image id {int(dataset.image_ids[i])} ({file})"


def _check_images(dataset: DetectionDataset, report: CheckReport, workers: int,
                  progress: bool) -> SplitSummary:
    """Decode every image of a split; check its size and orientation against its annotation,
    its boxes for duplicates, and count the boxes per class."""
    histogram = np.zeros(len(dataset.names), np.int64)
    over_cap = 0
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        results = pool.map(_inspect, dataset.files)
        for i, result in enumerate(tqdm(results, total=len(dataset), unit="img",
                                        desc=f"check {dataset.split}", disable=not progress)):
            if isinstance(result, str):
                report.add(UNREADABLE, result)
                histogram += np.bincount(dataset.labels(i), minlength=len(dataset.names))
                over_cap += len(dataset.labels(i)) > MAX_LABELS
                continue
            stored, shown = result.stored, result.shown
            if result.cut_short is not None:
                report.add(CUT_SHORT, f"{dataset.files[i]}: the file ends before its picture "
                           f"does; {result.cut_short}")
            declared = tuple(int(v) for v in dataset.sizes[i])
            found = orientation_problem(declared if declared[0] > 0 else None, stored, shown)
            if found is not None:
                report.add(found[0], f"{_where(dataset, i)}: {found[1]}")
            ann = dataset.annotations(i, shown)
            histogram += np.bincount(ann.labels, minlength=len(dataset.names))
            over_cap += np.count_nonzero(~ann.ignore) > MAX_LABELS
            for a, b, iou in duplicate_pairs(ann.boxes, ann.labels):
                a, b = int(a), int(b)
                box = ", ".join(f"{v:g}" for v in ann.boxes[a])
                report.add(DUPLICATE, f"{_where(dataset, i)}: boxes {a + 1} and {b + 1} (class "
                           f"{dataset.names[ann.labels[a]]}, x1 y1 x2 y2 = {box}) overlap with "
                           f"IoU {iou:.3f}")
    return SplitSummary(dataset.split, dataset.format, len(dataset), int(histogram.sum()),
                        dict(zip(dataset.names, histogram.tolist(), strict=True)), int(over_cap))


def _label_coverage(dataset: DetectionDataset) -> tuple[dict[Path, str], set[Path]]:
    """(image files on disk in the split's folders, each with where its label would be; those
    that have a label)."""
    if dataset.format == "yolo":
        files = {f: f"no label file {label_path(f)}" for f in dataset.files}
        return files, {f for f in files if label_path(f).is_file()}
    if dataset.format == "coco":
        data = read_coco_json(dataset.source)
        listed = {dataset.images_dir / str(im["file_name"]) for im in data["images"]}
        return {f: f"not in {dataset.source}" for f in list_images(dataset.images_dir)}, listed
    folders = find_voc_folders(dataset.source)
    if folders is None:
        return {}, set()
    annotations, images = folders
    on_disk = {p: f"no {annotations / p.stem}.xml (in it or a sub-folder)"
               for p in list_images(images)}
    stems = annotation_files(annotations)[0]
    return on_disk, {p for p in on_disk if p.stem in stems} | set(dataset.files)


def _labels_without_images(dataset: DetectionDataset) -> Iterable[Path]:
    """YOLO ``.txt`` files in the split's ``labels/`` folders with no image of their name in the
    matching image folder."""
    if dataset.format != "yolo":
        return []
    folders = {f.parent for f in dataset.files}
    on_disk = [p for d in folders for p in d.iterdir() if is_image_file(p)]
    expected = {label_path(p) for p in on_disk}
    label_dirs = {label_path(p).parent for p in on_disk} - folders
    return sorted(t for d in label_dirs if d.is_dir() for t in d.glob("*.txt")
                  if t not in expected)


def check_dataset(
    data: str | Path,
    split: str | None = None,
    images: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> CheckReport:
    """Check every split of the dataset ``data`` (any ``--data`` form), or only ``split``;
    ``images`` is the image folder of a COCO JSON; ``workers`` threads decode images, 0 one
    image at a time (default: the CPU count, at most 8)."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    check_images_option(data, images)
    report = CheckReport(str(data))
    on_disk: dict[Path, str] = {}
    labelled: set[Path] = set()
    for name in [split] if split else dataset_splits(data):
        try:
            dataset = open_dataset(data, name, images)
        except DataError as exc:
            if split:  # the split asked for cannot be read: that is the answer
                raise
            report.add(MALFORMED, f"split {name}: {exc}")  # report it, check the others
            continue
        for message, kind in zip(dataset.problems.messages, dataset.problems.kinds, strict=True):
            report.add(kind, message)
        disk, covered = _label_coverage(dataset)
        on_disk.update(disk)
        labelled |= covered
        for label in _labels_without_images(dataset):
            report.add(NO_IMAGE, f"{label}: no image of this name in the image folder")
        report.splits.append(_check_images(dataset, report, workers, progress))
        for kind, message in dataset.problems.notes:  # YOLO's sub-pixel boxes: known by now
            report.add(kind, message)
    for image in sorted(on_disk.keys() - labelled):
        report.add(NO_LABEL, f"{image}: {on_disk[image]}")
    return report

