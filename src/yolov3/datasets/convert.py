"""Conversion between COCO JSON, YOLO txt and Pascal VOC, exact for boxes and class names."""

from __future__ import annotations

import json
import logging
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolov3.datasets.base import Annotation, DetectionDataset
from yolov3.datasets.open import dataset_splits, open_dataset
from yolov3.datasets.problems import UNREADABLE
from yolov3.errors import DataError
from yolov3.fileio import atomic_write, writable_dir

log = logging.getLogger("yolov3")

FORMATS = ("coco", "yolo", "voc")


def coco_dict(dataset: DetectionDataset, annotations: Iterable[Annotation] | None = None,
              file_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The dataset's ground truth in COCO's format: its image ids, category ids
    (``dataset.category_ids``), ``bbox`` x, y, w, h pixels, ``area`` = w * h and ``iscrowd`` =
    the ignore flag (so COCOeval ignores VOC's difficult boxes too). ``annotations`` are the
    images to write (default: every image of the dataset; leave out unreadable ones);
    ``file_names``, one per annotation, replace the image file names."""
    images, anns = [], []
    category = np.asarray(dataset.category_ids, np.int64)
    if annotations is None:
        annotations = (dataset.annotations(i) for i in range(len(dataset)))
    for k, ann in enumerate(annotations):
        h, w = ann.size
        name = file_names[k] if file_names is not None else ann.file.name
        images.append({"id": ann.image_id, "file_name": name, "width": w, "height": h})
        xywh = ann.boxes.astype(np.float64)
        xywh[:, 2:] -= xywh[:, :2]
        for box, cat, crowd in zip(xywh.tolist(), category[ann.labels].tolist(),
                                   ann.ignore.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": ann.image_id, "category_id": cat,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": int(crowd)})
    categories = [{"id": c, "name": n}
                  for c, n in zip(dataset.category_ids, dataset.names, strict=True)]
    return {"images": images, "annotations": anns, "categories": categories}


def number(value: float) -> str:
    """A coordinate as text that reads back to the same float: ``233`` or ``0.5177777777777778``."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def unique_names(files: list[Path], taken: dict[str, Path]) -> list[str]:
    """Output file names for ``files``: each keeps its name unless another file already took
    its stem (label files are named by the stem), then ``stem_1.ext``, ... ``taken`` (stem ->
    file) is shared by the calls that fill one folder."""
    names = []
    for file in files:
        stem, k = file.stem, 1
        while stem in taken and taken[stem] != file:
            stem, k = f"{file.stem}_{k}", k + 1
        taken[stem] = file
        names.append(stem + file.suffix)
    return names


def readable_annotations(ds: DetectionDataset) -> list[Annotation]:
    """The ground truth of each image whose size is known. An image whose size must come from
    its header (YOLO labels are relative) and cannot be read is one of ``ds.problems`` and left
    out of the conversion (with ``strict``, an error)."""
    found = []
    for i in range(len(ds)):
        try:
            found.append(ds.annotations(i))
        except DataError as exc:
            ds.problems.add(str(exc), UNREADABLE)
    return found


Placer = Callable[[Path, Path], None]


def _place(symlink: bool) -> Placer:
    """Copies an image into the output (or links it, with ``symlink``)."""
    def place(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.unlink(missing_ok=True)
        if symlink:
            dst.symlink_to(src.resolve())
        else:
            shutil.copy2(src, dst)
    return place


def _write_yaml(path: Path, spec: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        f.write(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode())


def write_coco(splits: dict[str, DetectionDataset], out: Path, place: Placer) -> None:
    """``out/annotations/instances_SPLIT.json``, ``out/images/SPLIT/`` and ``out/data.yaml``
    (so that ``out`` is a ``--data`` with all its splits)."""
    for split, ds in splits.items():
        anns = readable_annotations(ds)
        names = unique_names([a.file for a in anns], {})
        for ann, name in zip(anns, names, strict=True):
            place(ann.file, out / "images" / split / name)
        with atomic_write(out / "annotations" / f"instances_{split}.json") as f:
            f.write(json.dumps(coco_dict(ds, anns, names)).encode())
    _write_yaml(out / "data.yaml", {"format": "coco", "path": ".", **{
        s: {"annotations": f"annotations/instances_{s}.json", "images": f"images/{s}"}
        for s in splits}})


def write_yolo(splits: dict[str, DetectionDataset], out: Path, place: Placer) -> None:
    """``out/images/SPLIT/``, ``out/labels/SPLIT/*.txt`` and ``out/data.yaml``. YOLO txt has no
    ignore flag: crowd / difficult boxes become ordinary boxes (a warning says how many)."""
    ignored = 0
    for split, ds in splits.items():
        anns = readable_annotations(ds)
        names = unique_names([a.file for a in anns], {})
        for ann, name in zip(anns, names, strict=True):
            ignored += int(ann.ignore.sum())
            place(ann.file, out / "images" / split / name)
            h, w = ann.size
            xyxy = ann.boxes.astype(np.float64) / np.array([w, h, w, h])
            cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]],
                                    axis=1)
            lines = [" ".join([str(c), *(number(v) for v in row)])
                     for c, row in zip(ann.labels.tolist(), cxcywh.tolist(), strict=True)]
            label = out / "labels" / split / Path(name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("".join(line + "\n" for line in lines))
    if ignored:
        log.warning("%d crowd/difficult boxes written as ordinary boxes: YOLO txt cannot mark "
                    "them", ignored)
    first = next(iter(splits.values()))
    _write_yaml(out / "data.yaml", {"format": "yolo", "path": ".",
                                    **{s: f"images/{s}" for s in splits}, "names": first.names})


def _voc_xml(file_name: str, size: tuple[int, int], names: list[str], boxes: np.ndarray,
             difficult: np.ndarray) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = file_name
    size_el = ET.SubElement(root, "size")
    for tag, value in (("width", size[1]), ("height", size[0]), ("depth", 3)):
        ET.SubElement(size_el, tag).text = str(value)
    # VOC's corners are 1-based pixel indices: xmin = x1 + 1, xmax = x2.
    corners = boxes.astype(np.float64) + np.array([1.0, 1.0, 0.0, 0.0])
    for name, box, hard in zip(names, corners.tolist(), difficult.tolist(), strict=True):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = str(int(hard))
        bndbox = ET.SubElement(obj, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
            ET.SubElement(bndbox, tag).text = number(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8")


def write_voc(splits: dict[str, DetectionDataset], out: Path, place: Placer) -> None:
    """``out/Annotations/*.xml``, ``out/JPEGImages/``, ``out/ImageSets/Main/SPLIT.txt`` (not for
    a dataset that is a single set) and ``out/classes.txt`` (the class order)."""
    taken: dict[str, Path] = {}
    for split, ds in splits.items():
        anns = readable_annotations(ds)
        names = unique_names([a.file for a in anns], taken)
        for ann, name in zip(anns, names, strict=True):
            place(ann.file, out / "JPEGImages" / name)
            xml = _voc_xml(name, ann.size, [ds.names[k] for k in ann.labels.tolist()],
                           ann.boxes, ann.ignore)
            (out / "Annotations").mkdir(parents=True, exist_ok=True)
            (out / "Annotations" / Path(name).with_suffix(".xml")).write_bytes(xml)
        if split != "all":
            sets = out / "ImageSets" / "Main"
            sets.mkdir(parents=True, exist_ok=True)
            (sets / f"{split}.txt").write_text("".join(Path(n).stem + "\n" for n in names))
    first = next(iter(splits.values()))
    (out / "classes.txt").write_text("".join(n + "\n" for n in first.names))


WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}


def convert(
    data: str | Path,
    to: str,
    out: str | Path,
    images: str | Path | None = None,
    strict: bool = False,
    symlink: bool = False,
) -> dict[str, DetectionDataset]:
    """Write every split of the dataset ``data`` (any ``--data`` form) to ``out`` in format
    ``to`` (coco, yolo or voc), images copied (or linked). Returns the datasets read, whose
    ``problems`` list what was skipped."""
    if to not in WRITERS:
        raise DataError(f"cannot convert to {to!r}: the formats are {', '.join(FORMATS)}")
    splits = {s: open_dataset(data, s, images, strict) for s in dataset_splits(data)}
    names = {tuple(ds.names) for ds in splits.values()}
    if len(names) > 1:
        raise DataError(f"{data}: the splits have different class names; convert them one by one")
    out = writable_dir(out)
    try:
        WRITERS[to](splits, out, _place(symlink))
    except OSError as exc:
        raise DataError(f"{out}: writing the converted dataset failed ({exc}); check the free "
                        "space and the permissions of the output folder") from None
    return splits
