"""Pascal VOC: an XML file per image (``Annotations/``) beside the images (``JPEGImages/``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolov3.classes import read_names
from yolov3.datasets.base import DetectionDataset, image_ids, valid_size
from yolov3.datasets.boxes import (
    OK,
    box_faults,
    clip_boxes,
    describe_fault,
    describe_small,
    large_enough,
)
from yolov3.datasets.problems import BOX, CLASS, NO_IMAGE, NO_LABEL, Problems
from yolov3.errors import DataError
from yolov3.images import list_images

ANNOTATION_FOLDERS = ("Annotations", "annotations", "annots")
IMAGE_FOLDERS = ("JPEGImages", "images", "Images")
# Without ImageSets/Main, this share of the images (chosen by a hash of the file name, so the
# choice never changes as files are added) is the val split.
VAL_PERCENT = 20
# Optional, in the root: the class names in index order, one per line.
CLASSES_FILE = "classes.txt"


@dataclass
class VocFile:
    """One parsed annotation file: ``boxes`` (n, 4) x1, y1, x2, y2 pixels (VOC's 1-based
    inclusive corners made 0-based continuous: x1 = xmin - 1, x2 = xmax)."""

    filename: str
    size: tuple[int, int]
    names: list[str]
    boxes: np.ndarray
    difficult: np.ndarray


def find_voc_folders(root: Path) -> tuple[Path, Path] | None:
    """(annotations folder, images folder) when ``root`` is laid out as VOC, else None."""
    ann = next((root / f for f in ANNOTATION_FOLDERS
                if (root / f).is_dir() and any((root / f).glob("*.xml"))), None)
    images = next((root / f for f in IMAGE_FOLDERS if (root / f).is_dir()), None)
    return (ann, images) if ann and images else None


def _number(obj: ET.Element, path: Path, tag: str) -> float:
    text = obj.findtext(tag)
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{path}: <{tag}> is missing or not a number ({text!r})") from None


def parse_voc_xml(path: Path) -> VocFile:
    """One VOC annotation file; :class:`DataError` naming the file when it cannot be used."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DataError(f"{path}: not a readable XML file ({exc})") from None
    size = root.find("size")
    if size is None:
        raise DataError(f"{path}: has no <size> (the image width and height)")
    width, height = _number(size, path, "width"), _number(size, path, "height")
    if not valid_size(height, width):
        raise DataError(f"{path}: <size> is {width:g}x{height:g}, not an image size")
    width, height = int(width), int(height)
    names, boxes, difficult = [], [], []
    for k, obj in enumerate(root.iter("object"), 1):
        name, box = obj.findtext("name"), obj.find("bndbox")
        if not name or box is None:
            raise DataError(f"{path}: object {k} has no <name> or no <bndbox>")
        names.append(name.strip())
        boxes.append([_number(box, path, t) for t in ("xmin", "ymin", "xmax", "ymax")])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    xyxy = np.array(boxes, np.float64).reshape(-1, 4) - np.array([1.0, 1.0, 0.0, 0.0])
    filename = (root.findtext("filename") or "").strip()
    return VocFile(filename, (height, width), names, xyxy, np.array(difficult, bool))


def voc_splits(root: Path) -> list[str]:
    """The splits a VOC root defines: ImageSets/Main's train, val, test files when present,
    else the deterministic train / val split by file name."""
    sets = root / "ImageSets" / "Main"
    if sets.is_dir():
        return [s for s in ("train", "val", "test") if (sets / f"{s}.txt").is_file()] or ["all"]
    return ["train", "val"]


def _split_stems(root: Path, stems: list[str], split: str) -> list[str]:
    """The annotation stems of ``split``: ``all``; an ImageSets/Main file; else by hash."""
    if split == "all":
        return stems
    sets = root / "ImageSets" / "Main"
    if sets.is_dir():
        listed = sets / f"{split}.txt"
        if not listed.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt") if "_" not in p.stem)
            raise DataError(f"{listed}: no such split file (splits here: "
                            f"{', '.join([*have, 'all'])})")
        try:
            text = listed.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{listed}: cannot read the split file ({exc})") from None
        return [line.split()[0] for line in text.splitlines() if line.strip()]
    if split not in ("train", "val"):
        raise DataError(f"{root}: has no ImageSets/Main, so its splits are train, val "
                        f"(by file name) and all; not {split!r}")
    is_val = [zlib.crc32(s.encode()) % 100 < VAL_PERCENT for s in stems]
    return [s for s, v in zip(stems, is_val, strict=True) if v == (split == "val")]


class VocDataset(DetectionDataset):
    """A Pascal VOC folder. Class names are ``names`` when given, else those of ``classes.txt``
    in the root, else every object name in the annotation files, sorted. ``difficult`` boxes
    are kept with ``ignore`` set. Image ids are the file names when all are numbers, else their
    rank by name."""

    format = "voc"

    def __init__(self, root: Path, split: str = "val", names: list[str] | None = None,
                 strict: bool = False) -> None:
        folders = find_voc_folders(root)
        if folders is None:
            raise DataError(f"{root}: not a Pascal VOC folder (needs one of "
                            f"{', '.join(ANNOTATION_FOLDERS)} with .xml files and one of "
                            f"{', '.join(IMAGE_FOLDERS)})")
        ann_dir, self.images_dir = folders
        problems = Problems(strict)
        all_stems = sorted(p.stem for p in ann_dir.glob("*.xml"))
        if names is None and (root / CLASSES_FILE).is_file():
            names = read_names(root / CLASSES_FILE)
        id_of = dict(zip(all_stems, image_ids(all_stems).tolist(), strict=True))
        parsed: dict[str, VocFile | DataError] = {}
        wanted = _split_stems(root, all_stems, split)
        for stem in all_stems if names is None else wanted:
            try:
                parsed[stem] = parse_voc_xml(ann_dir / f"{stem}.xml")
            except DataError as exc:
                parsed[stem] = exc
        if names is None:
            names = sorted({n for v in parsed.values() if isinstance(v, VocFile) for n in v.names})
        label_of = {n: k for k, n in enumerate(names)}
        image_of = {p.stem: p for p in reversed(list_images(self.images_dir))}

        files, ids, sizes, boxes, labels, ignore = [], [], [], [], [], []
        for stem in wanted:
            xml = ann_dir / f"{stem}.xml"
            if stem not in parsed:
                problems.add(f"{xml}: listed in the {split} split but missing", NO_LABEL)
                continue
            item = parsed[stem]
            if isinstance(item, DataError):
                problems.add(str(item))
                continue
            image = image_of.get(stem) or self.images_dir / item.filename
            if not image.is_file():
                problems.add(f"{xml}: its image ({stem}.* or {item.filename!r}) is not in "
                             f"{self.images_dir}", NO_IMAGE)
                continue
            cls = np.array([label_of.get(n, -1) for n in item.names], np.int64)
            faults = box_faults(item.boxes, np.array(item.size))
            errors = [(f"{xml}: object {k + 1}: class {item.names[k]!r} is not one of the names",
                       CLASS) for k in np.flatnonzero(cls < 0)]
            errors += [
                (f"{xml}: object {k + 1}: {describe_fault(faults[k], item.boxes[k], item.size)}",
                 BOX)
                for k in np.flatnonzero(faults != OK)
            ]
            for message, kind in errors:
                problems.add(message, kind)
            if errors:
                continue
            xyxy = clip_boxes(item.boxes, np.array(item.size))
            keep = large_enough(xyxy)
            for k in np.flatnonzero(~keep):
                problems.note(f"{xml}: object {k + 1}: {describe_small(xyxy[k])}")
            files.append(image)
            ids.append(id_of[stem])
            sizes.append(item.size)
            boxes.append(xyxy[keep])
            labels.append(cls[keep])
            ignore.append(item.difficult[keep])
        super().__init__(
            source=root, split=split, names=names, category_ids=None, files=files,
            image_ids=np.array(ids, np.int64), sizes=np.array(sizes, np.int64).reshape(-1, 2),
            boxes=boxes, labels=labels, ignore=ignore, problems=problems,
        )
        # the annotation files are those in ann_dir
        self.sources.files |= {root / CLASSES_FILE, *(root / "ImageSets" / "Main" / f"{s}.txt"
                                                      for s in ("train", "val", "test"))}
        self.sources.folders |= {ann_dir, self.images_dir}
