"""Conversion between COCO JSON, YOLO txt and Pascal VOC, exact for boxes (YOLO txt: to its six
decimals) and class names, checked by reading the written dataset back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from yolov3.choices import DATASET_FORMATS
from yolov3.datasets.base import Annotation, DetectionDataset, SourcePaths
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.open import DIR_YAMLS, dataset_splits, open_dataset
from yolov3.datasets.output_folder import MARKER, earlier_output, mark, remove_earlier
from yolov3.datasets.problems import UNREADABLE
from yolov3.datasets.yolo_txt import data_yaml, label_text
from yolov3.errors import DataError
from yolov3.fileio import atomic_write, expand_home, writable_dir

log = logging.getLogger("yolov3")



def coco_dict(dataset: DetectionDataset, annotations: Iterable[Annotation] | None = None,
              file_names: Sequence[str] | None = None,
              category_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The dataset's ground truth in COCO's format: its image ids, category ids
    (``category_ids``, one per class; default ``dataset.category_ids``), ``bbox`` x, y, w, h
    pixels, ``area`` = w * h and ``iscrowd`` = the ignore flag (so COCOeval ignores VOC's
    difficult boxes too). ``annotations`` are the images to write (default: every image of the
    dataset; leave out unreadable ones); ``file_names``, one per annotation, replace the image
    file names."""
    images, anns = [], []
    ids = list(dataset.category_ids if category_ids is None else category_ids)
    category = np.asarray(ids, np.int64)
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
    categories = [{"id": c, "name": n} for c, n in zip(ids, dataset.names, strict=True)]
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


@dataclass
class Output:
    """One file a conversion writes: an image placed from ``image`` (copied, or linked), or
    the bytes ``content()`` makes; an ``atomic`` file is written whole or not at all. Planned
    first, so that they are checked against the source before anything is written."""

    path: Path
    image: Path | None = None
    content: Callable[[], bytes] | None = None
    atomic: bool = False


def _yaml_output(path: Path, spec: dict[str, Any]) -> Output:
    return Output(path, content=partial(data_yaml, spec), atomic=True)


def _text(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


Splits = dict[str, tuple[DetectionDataset, list[Annotation]]]


def write_coco(splits: Splits, out: Path) -> list[Output]:
    """``out/annotations/instances_SPLIT.json``, ``out/images/SPLIT/`` and ``out/data.yaml``
    (so that ``out`` is a ``--data`` with all its splits)."""
    outputs = []
    for split, (ds, anns) in splits.items():
        names = unique_names([a.file for a in anns], {})
        outputs += [Output(out / "images" / split / name, image=ann.file)
                    for ann, name in zip(anns, names, strict=True)]
        outputs.append(Output(out / "annotations" / f"instances_{split}.json", atomic=True,
                              content=partial(_coco_json, ds, anns, names)))
    outputs.append(_yaml_output(out / "data.yaml", {"format": "coco", "path": ".", **{
        s: {"annotations": f"annotations/instances_{s}.json", "images": f"images/{s}"}
        for s in splits}}))
    return outputs


def coco_category_ids(ds: DetectionDataset) -> list[int]:
    """The category ids of ``ds`` converted to a COCO JSON: a COCO JSON's own, else the class
    index + 1 (COCO's ids start at 1: trainers such as torchvision's read 0 as background)."""
    return ds.category_ids if isinstance(ds, CocoDataset) else list(range(1, len(ds.names) + 1))


def _coco_json(ds: DetectionDataset, anns: list[Annotation], names: list[str]) -> bytes:
    return json.dumps(coco_dict(ds, anns, names, coco_category_ids(ds))).encode()


def _yolo_label(ann: Annotation) -> bytes:
    return label_text(ann.labels, ann.boxes, ann.size).encode()


def write_yolo(splits: Splits, out: Path) -> list[Output]:
    """``out/images/SPLIT/``, ``out/labels/SPLIT/*.txt`` and ``out/data.yaml``. YOLO txt has no
    ignore flag: crowd / difficult boxes become ordinary boxes (:func:`convert` warns)."""
    outputs = []
    for split, (_, anns) in splits.items():
        names = unique_names([a.file for a in anns], {})
        for ann, name in zip(anns, names, strict=True):
            outputs.append(Output(out / "images" / split / name, image=ann.file))
            outputs.append(Output(out / "labels" / split / Path(name).with_suffix(".txt"),
                                  content=partial(_yolo_label, ann)))
    first = next(iter(splits.values()))[0]
    outputs.append(_yaml_output(out / "data.yaml", {"format": "yolo", "path": ".",
                                                    **{s: f"images/{s}" for s in splits},
                                                    "names": first.names}))
    return outputs


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


def write_voc(splits: Splits, out: Path) -> list[Output]:
    """``out/Annotations/*.xml``, ``out/JPEGImages/``, ``out/ImageSets/Main/SPLIT.txt`` (not for
    a dataset that is a single set) and ``out/classes.txt`` (the class order)."""
    taken: dict[str, Path] = {}
    outputs = []
    for split, (ds, anns) in splits.items():
        names = unique_names([a.file for a in anns], taken)
        for ann, name in zip(anns, names, strict=True):
            outputs.append(Output(out / "JPEGImages" / name, image=ann.file))
            outputs.append(Output(
                out / "Annotations" / Path(name).with_suffix(".xml"),
                content=partial(_voc_xml, name, ann.size,
                                [ds.names[k] for k in ann.labels.tolist()], ann.boxes,
                                ann.ignore)))
        if split != "all":
            outputs.append(Output(out / "ImageSets" / "Main" / f"{split}.txt",
                                  content=partial(_text, [Path(n).stem for n in names])))
    first = next(iter(splits.values()))[0]
    outputs.append(Output(out / "classes.txt", content=partial(_text, first.names)))
    return outputs


WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}


def _real(path: Path) -> Path:
    """``path`` absolute, with every link followed."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13)
        return path.absolute()


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing folder or file (links followed), else None: one folder
    has one identity whatever the path (a letter case on a case-insensitive disk, a mount)."""
    try:
        found = path.stat()
    except (OSError, ValueError):
        return None
    return found.st_dev, found.st_ino


def _inside(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` is the resolved ``folder`` or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class SourceGuard:
    """The files and folders a dataset is read from (:meth:`DetectionDataset.source_paths`,
    and the ``--data`` description), to check a conversion's output against: it never writes
    over, deletes or adds to its source.

    Writing a file replaces its folder entry (a link there is replaced, not written through),
    so what an output touches is its entry: its folder resolved, and its own name. A source
    file is hit when that entry is the file's entry (its link, for a linked file) or the file
    it resolves to. Folders are also compared by identity (device and inode), which no spelling
    of a path escapes."""

    def __init__(self, data: str | Path, splits: dict[str, DetectionDataset]) -> None:
        sources = SourcePaths()
        for ds in splits.values():
            sources.update(ds.source_paths())
        given = expand_home(data)
        if given.is_dir():  # the files that say which dataset a folder is
            sources.files |= {given / name for name in DIR_YAMLS}
            sources.roots.add(given)
        else:
            sources.files.add(given)
            sources.roots.add(given.parent)
        self._resolved: dict[str, str] = {}  # a folder as written -> resolved (a cache)
        self.files: dict[str, Path] = {}  # resolved entry or file -> the source file
        holding: dict[str, Path] = {}  # each resolved folder that holds source files -> one
        for file in sorted(sources.files, key=str):
            entry = self.entry(file)
            self.files.setdefault(entry, file)
            holding.setdefault(os.path.dirname(entry), file)
            if os.path.islink(entry):
                real = str(_real(Path(entry)))
                self.files.setdefault(real, file)
                holding.setdefault(os.path.dirname(real), file)
        self.folders = {str(_real(d)): d for d in sources.folders}
        # By identity: the folders holding source files, the folders listed, and every folder
        # above either (an output folder there holds the source).
        self.dir_ids = {key: file for folder, file in holding.items()
                        if (key := _identity(Path(folder))) is not None}
        self.folder_ids = {key: d for d in sources.folders if (key := _identity(d)) is not None}
        self.root_ids = {key: d for d in sources.roots if (key := _identity(d)) is not None}
        self.above: dict[tuple[int, int], Path] = {}
        for real, example in [*holding.items(), *self.folders.items()]:
            for folder in [Path(real), *Path(real).parents]:
                if (key := _identity(folder)) is not None:
                    self.above.setdefault(key, example)

    def entry(self, path: Path) -> str:
        """The folder entry that writing ``path`` replaces: its folder resolved, its name."""
        folder, name = os.path.split(os.fspath(path))
        real = self._resolved.get(folder)
        if real is None:
            real = self._resolved[folder] = str(_real(Path(folder or os.curdir)))
        return os.path.join(real, name)

    def _in_folder(self, path: Path, folders: dict[tuple[int, int], Path] | None = None
                   ) -> Path | None:
        """The source folder (of ``folders`` by identity, default those it lists) that ``path``
        (an existing folder) is or lies in."""
        folders = self.folder_ids if folders is None else folders
        for folder in [path, *_real(path).parents]:
            if (key := _identity(folder)) in folders:
                return folders[key]
        return None

    def check_out(self, out: Path) -> None:
        """:class:`DataError` when the output folder holds a file of the source, overlaps one
        of its folders or lies inside its root (checked before anything is written)."""
        top = str(_real(out))
        held = [file for real, file in self.files.items() if _inside(real, top)]
        key = _identity(out)
        if held or key in self.above:
            example = min(held) if held else self.above[key]  # type: ignore[index]
            raise DataError(f"{out}: holds {example}, a file of the dataset being converted; "
                            "a conversion never writes over its source: choose an output folder "
                            "outside the dataset")
        for real, folder in sorted(self.folders.items()):
            if _inside(top, real) or _inside(real, top):
                where = "lies inside" if _inside(top, real) else "holds"
                self._folder_error(out, where, folder)
        nearest = next(p for p in [out, *_real(out).parents] if p.is_dir() or p == p.parent)
        if (folder := self._in_folder(nearest)) is not None:  # out, or where it will be made
            self._folder_error(out, "lies inside", folder)
        if (root := self._in_folder(nearest, self.root_ids)) is not None:
            raise DataError(f"{out}: lies inside {root}, the folder of the dataset being "
                            "converted; a conversion's output never joins its source: choose an "
                            "output folder outside it")

    @staticmethod
    def _folder_error(out: Path, where: str, folder: Path) -> None:
        raise DataError(f"{out}: {where} {folder}, a folder the dataset being converted lists "
                        "(its images or annotations), so that the files written would join the "
                        "source: choose an output folder outside it")

    def check(self, outputs: Iterable[Output]) -> None:
        """:class:`DataError` naming the first output that would replace a source file or land
        in a source folder (through a linked folder in the output)."""
        checked: set[Path] = set()
        for output in outputs:
            entry = self.entry(output.path)
            hit = self.files.get(entry)
            if hit is not None:
                raise DataError(f"{output.path}: writing it would replace {hit}, a file of the "
                                "dataset being converted; a conversion never writes over its "
                                "source: choose an output folder outside the dataset")
            folder, inside = output.path.parent, None
            if folder not in checked:  # by identity, once per folder
                checked.add(folder)
                beside = self.dir_ids.get(_identity(folder))  # type: ignore[arg-type]
                if beside is not None:
                    raise DataError(f"{output.path}: writing it would put a file beside "
                                    f"{beside}, in a folder of the dataset being converted "
                                    "(a conversion never writes over its source): choose an "
                                    "output folder outside the dataset")
                inside = self._in_folder(folder) if folder.is_dir() else None
            if inside is None:
                inside = next((d for real, d in self.folders.items() if _inside(entry, real)),
                              None)
            if inside is not None:
                raise DataError(f"{output.path}: writing it would put a file in {inside}, a "
                                "folder of the dataset being converted: choose an output "
                                "folder outside the dataset")


def write_outputs(outputs: list[Output], symlink: bool) -> None:
    """Write the planned files, each once (the first plan of a path). An existing file or link
    at an output path is replaced, never written through."""
    done: set[Path] = set()
    for output in outputs:
        if output.path in done:  # one image in several splits of a VOC output
            continue
        done.add(output.path)
        output.path.parent.mkdir(parents=True, exist_ok=True)
        if output.content is not None and output.atomic:
            with atomic_write(output.path) as f:
                f.write(output.content())
            continue
        data = output.content() if output.content is not None else None
        target = output.image.resolve() if output.image is not None else None
        output.path.unlink(missing_ok=True)
        if data is not None:
            output.path.write_bytes(data)
        elif symlink:
            output.path.symlink_to(target)
        else:
            shutil.copy2(target, output.path)


def _histogram(anns: Iterable[Annotation], classes: int) -> np.ndarray:
    """Boxes per class of ``anns``."""
    labels = [a.labels for a in anns]
    return np.bincount(np.concatenate([np.zeros(0, np.int64), *labels]), minlength=classes)


def _counts(images: int, boxes: np.ndarray, names: list[str]) -> str:
    per_class = ", ".join(f"{n} {c}" for n, c in zip(names, boxes.tolist(), strict=True))
    return f"{images} images and {int(boxes.sum())} boxes ({per_class})"


def read_back(out: Path, planned: Splits) -> None:
    """Read each split of the written dataset ``out`` back: a :class:`DataError` when it does
    not hold the class names, the images and the boxes per class that were converted."""
    for split, (ds, anns) in planned.items():
        try:
            got = open_dataset(out, split)
            got_anns = [got.annotations(i) for i in range(len(got))]
        except DataError as exc:
            raise DataError(f"{out}: the converted dataset cannot be read back ({exc})") from None
        found = [*got.problems.messages, *(m for _, m in got.problems.notes)]
        why = f"; reading it back: {'; '.join(found[:3])}" if found else ""
        if got.names != ds.names:
            raise DataError(f"{out}: the class names of the {split} split read back as "
                            f"{got.names} where {ds.names} were written{why}")
        want, have = _histogram(anns, len(ds.names)), _histogram(got_anns, len(ds.names))
        if len(got_anns) != len(anns) or (want != have).any():
            raise DataError(f"{out}: the {split} split reads back as "
                            f"{_counts(len(got_anns), have, ds.names)} where "
                            f"{_counts(len(anns), want, ds.names)} were written{why}. The "
                            "output is left as written; converting again replaces it")


def convert(
    data: str | Path,
    to: str,
    out: str | Path,
    images: str | Path | None = None,
    strict: bool = False,
    symlink: bool = False,
    overwrite: bool = False,
) -> dict[str, DetectionDataset]:
    """Write every split of the dataset ``data`` (any ``--data`` form) to ``out`` in format
    ``to`` (coco, yolo or voc), images copied (or linked), and read it back. Returns the
    datasets read, whose ``problems`` list what was skipped.

    The source is never written over: a :class:`DataError` names the path, before anything is
    written, when ``out`` holds a file of the source (``out`` is the source's root, or a folder
    above it), overlaps a folder it lists or lies inside the source's folder, or when an output
    would replace a source file. ``out`` is new or empty, or the output of an earlier
    conversion (see :mod:`yolov3.datasets.output_folder`), which is replaced: that of the same
    source always, that of another with ``overwrite``. A :class:`DataError` too when the
    written dataset does not read back with the images and boxes converted (:func:`read_back`).
    """
    if to not in WRITERS:
        raise DataError(f"cannot convert to {to!r}: the formats are {', '.join(DATASET_FORMATS)}")
    splits = {s: open_dataset(data, s, images, strict) for s in dataset_splits(data)}
    names = {tuple(ds.names) for ds in splits.values()}
    if len(names) > 1:
        raise DataError(f"{data}: the splits have different class names; convert them one by one")
    guard = SourceGuard(data, splits)
    guard.check_out(Path(out))
    out = writable_dir(out)
    planned = {s: (ds, readable_annotations(ds)) for s, ds in splits.items()}
    outputs = WRITERS[to](planned, out)
    guard.check([*outputs, Output(out / MARKER)])
    source = str(_real(expand_home(data)))
    earlier = earlier_output(out, source, overwrite)
    try:
        remove_earlier(out, earlier)
        mark(out, source, to, [o.path for o in outputs])
        write_outputs(outputs, symlink)
    except OSError as exc:
        raise DataError(f"{out}: writing the converted dataset failed ({exc}); check the free "
                        "space and the permissions of the output folder") from None
    ignored = sum(int(a.ignore.sum()) for _, anns in planned.values() for a in anns)
    if to == "yolo" and ignored:
        log.warning("%d crowd/difficult boxes written as ordinary boxes: YOLO txt cannot mark "
                    "them", ignored)
    read_back(out, planned)
    return splits
