"""COCO: an ``instances_*.json`` annotation file and a folder of images."""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yolov3.classes import check_names
from yolov3.datasets import cache as cache_module
from yolov3.datasets.base import DetectionDataset, valid_size
from yolov3.datasets.boxes import (
    OK,
    box_faults,
    clip_boxes,
    describe_fault,
    describe_small,
    large_enough,
)
from yolov3.datasets.cache import (
    CacheFile,
    file_keys,
    get_strings,
    join_names,
    put_strings,
    unchanged,
)
from yolov3.datasets.problems import (
    BOX,
    CLASS,
    NO_IMAGE,
    REPEATED_ID,
    REPEATED_IMAGE,
    Problems,
)
from yolov3.errors import DataError

COCO_KEYS = ("images", "annotations", "categories")
log = logging.getLogger("yolov3")


def read_coco_json(path: Path) -> dict[str, Any]:
    """The parsed annotation file; :class:`DataError` when it is not COCO's format."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    fields = data if isinstance(data, dict) else {}
    missing = [k for k in COCO_KEYS if not isinstance(fields.get(k), list)]
    if missing:
        raise DataError(f"{path}: not a COCO annotation file: it has no "
                        f"{', '.join(repr(k) for k in missing)} list (a COCO file has "
                        f"{', '.join(COCO_KEYS)})")
    return data


def split_of_json(path: Path) -> str:
    """The split a COCO file holds, from its name: ``instances_val2017.json`` -> ``val``."""
    stem = path.stem.removeprefix("instances_")
    return next((s for s in ("train", "val", "test") if stem.startswith(s)), stem)


def coco_images_dir(json_path: Path, images: Path | None, first_file: str | None) -> Path:
    """Where ``file_name`` s are resolved: ``images`` when given; else the first of an
    ``images/`` folder beside the JSON, the JSON's own folder and, for COCO's own layout
    (``ROOT/annotations/instances_val2017.json``), ``ROOT/images/val2017``, ``ROOT/val2017``,
    ``ROOT/images`` that holds the first image."""
    if images is not None:
        if not images.is_dir():
            raise DataError(f"{images}: the --images folder does not exist")
        return images
    here = json_path.parent
    candidates = [here / "images", here]
    if here.name == "annotations":
        name = json_path.stem.removeprefix("instances_")
        candidates += [here.parent / "images" / name, here.parent / name, here.parent / "images"]
    existing = [c for c in candidates if c.is_dir()]
    if first_file is not None:
        for folder in existing:
            if (folder / first_file).is_file():
                return folder
    return existing[0] if existing else here


def _categories(path: Path, data: dict[str, Any]) -> tuple[list[int], list[str]]:
    """Category ids (sorted) and names: contiguous class k is the k-th smallest id."""
    cats = data["categories"]
    if not cats:
        raise DataError(f"{path}: the 'categories' list is empty")
    for c in cats:
        if not (isinstance(c, dict) and isinstance(c.get("id"), int)
                and not isinstance(c["id"], bool) and isinstance(c.get("name"), str)):
            raise DataError(f"{path}: category {c!r:.80} needs an integer 'id' and a 'name' "
                            "that is text")
    cats = sorted(cats, key=lambda c: c["id"])
    ids = [c["id"] for c in cats]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: category ids are not unique")
    return ids, check_names([c["name"] for c in cats], f"{path}: categories")


#: What :func:`annotation_fields` raises for a malformed annotation.
MALFORMED_ANNOTATION = (AttributeError, KeyError, TypeError, ValueError)


def json_number(value: Any, what: str) -> int | float:
    """``value`` when it is a JSON number (not a boolean); a TypeError saying what ``what`` (a
    field) is otherwise. A number written as text (``"236.98"``) is refused like any other
    non-number: one rule for every numeric field, which the reader, the metric's ground truth
    and ``yolov3 data check`` all apply."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        text = ", a number written as text (COCO's numbers are unquoted)" if isinstance(
            value, str) else ", not a number"
        raise TypeError(f"{what} is {value!r:.40}{text}")
    return value


def annotation_fields(a: Any) -> tuple[Any, Any, list[float], bool]:
    """The ``image_id``, ``category_id``, ``bbox`` (x, y, w, h) and crowd flag of annotation
    ``a``; one of :data:`MALFORMED_ANNOTATION` when it is not an object with a numeric
    image_id and category_id and a bbox of 4 numbers, or when its optional ``id``, ``area``
    or ``iscrowd`` (a number or a boolean) are something else (see :func:`json_number`). The
    reader skips and reports such an annotation, and the metric's ground truth leaves it
    out."""
    if not isinstance(a, dict):
        raise TypeError(f"not an object but {type(a).__name__}")
    image_id = json_number(a["image_id"], "'image_id'")
    category_id = json_number(a["category_id"], "'category_id'")
    bbox = a["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise ValueError(f"'bbox' is {bbox!r:.60}, not a list of 4 numbers")
    for value in bbox:
        json_number(value, "'bbox' holds a value that")
    for key in ("id", "area"):
        if key in a:
            json_number(a[key], repr(key))
    crowd = a.get("iscrowd", 0)
    if not isinstance(crowd, bool):
        json_number(crowd, "'iscrowd'")
    return image_id, category_id, [float(v) for v in bbox], bool(crowd)


def image_index(value: Any, index: dict[Any, int]) -> int:
    """The place of the image that an annotation's ``image_id`` names, -1 when none: a number
    written as text too, so that the image of an annotation refused for that is left out."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return -1
    try:
        return index.get(value, -1)
    except TypeError:  # not hashable: malformed
        return -1


def usable_id(value: Any) -> bool:
    """Whether an annotation id works for pycocotools: a positive integer (its matching takes
    id 0 for "no match", so a box of id 0 never counts as found)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def note_annotation_ids(path: Path, anns: list[Any], problems: Problems) -> None:
    """Note (``REPEATED_ID``) the annotation ids that are repeated, as in files merged from
    several whose ids all start at 1, or not positive integers. pycocotools keeps one
    annotation per id, so either gives a wrong AP in silence; :meth:`CocoDataset.ground_truth`
    renumbers them and keeps every annotation."""
    positions: dict[int, list[int]] = {}
    for j, a in enumerate(anns):
        if not isinstance(a, dict) or "id" not in a:
            continue  # malformed (reported as such), or without an id (numbered)
        if usable_id(a["id"]):
            positions.setdefault(a["id"], []).append(j)
        else:
            problems.note(f"{path}: annotation #{j}: id {a['id']!r} is not a positive integer; "
                          "the metric's ground truth renumbers the annotations", REPEATED_ID)
    for value, where in positions.items():
        if len(where) > 1:
            shown = ", ".join(f"#{j}" for j in where[:5]) + (", ..." if len(where) > 5 else "")
            problems.note(f"{path}: annotation id {value} is used by {len(where)} annotations "
                          f"({shown}); ids must be unique (pycocotools keeps one annotation per "
                          "id), so the metric's ground truth renumbers them", REPEATED_ID)


@dataclass
class _CocoRead:
    """What :class:`CocoDataset` keeps of its annotation file, for every image entry (``files``
    to ``keep``) and packed for the images kept (``offsets`` to ``ignore``)."""

    images_dir: Path
    first: Any  # the first image's file_name, which chooses images_dir
    names: list[str]
    category_ids: list[int]
    files: list[Path]
    file_names: list[str]  # as the JSON gives them: files are images_dir / each
    image_keys: np.ndarray
    ids: np.ndarray
    sizes: np.ndarray
    keep: np.ndarray
    offsets: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    problems: list[tuple[str, str]]  # (message, kind)
    notes: list[tuple[str, str]]  # (kind, message)
    from_cache: bool = False


def _image_key(found: os.stat_result | None) -> tuple[int, int, int]:
    """What the reader's checks see of an image file: whether it is a regular file, and its
    device and inode (one file under two ids); -1s when missing."""
    if found is None:
        return (-1, -1, -1)
    return (int(stat.S_ISREG(found.st_mode)), found.st_dev, found.st_ino)


def _from_cache(cache: CacheFile, path: Path, images: Path | None,
                json_key: np.ndarray) -> _CocoRead | None:
    """The cached read of ``path`` when the file and every image file (as :func:`_image_key`
    sees it) are unchanged, else None."""
    old = cache.load()
    if old is None:
        return None
    try:
        if not unchanged(old["json.key"], json_key, cache.loaded_stamp).all():
            return None
        first = get_strings(old, "first")
        images_dir = coco_images_dir(path, images, first[0] if first else None)
        if [str(images_dir)] != get_strings(old, "images_dir"):
            return None
        file_names = get_strings(old, "file_names")
        files = join_names(images_dir, file_names)
        keys = []
        for file in files:
            try:
                keys.append(_image_key(os.stat(file)))
            except OSError:
                keys.append(_image_key(None))
        if not np.array_equal(np.array(keys, np.int64).reshape(-1, 3), old["image.keys"]):
            return None
        read = _CocoRead(
            images_dir=images_dir, first=first[0] if first else None,
            names=get_strings(old, "names"), category_ids=old["category_ids"].tolist(),
            files=files, file_names=file_names, image_keys=old["image.keys"], ids=old["ids"],
            sizes=old["sizes"],
            keep=old["keep"].astype(bool), offsets=old["offsets"], boxes=old["boxes"],
            labels=old["labels"], ignore=old["ignore"].astype(bool),
            problems=list(zip(get_strings(old, "problems.message"),
                              get_strings(old, "problems.kind"), strict=True)),
            notes=list(zip(get_strings(old, "notes.kind"), get_strings(old, "notes.message"),
                           strict=True)),
            from_cache=True,
        )
        n, kept = len(files), int(read.keep.sum())
        if not (len(read.ids) == len(read.keep) == n and read.sizes.shape == (n, 2)
                and len(read.offsets) == kept + 1 and read.offsets[0] == 0
                and (np.diff(read.offsets) >= 0).all()
                and len(read.boxes) == len(read.labels) == len(read.ignore) == read.offsets[-1]
                and len(read.names) == len(read.category_ids)):
            raise ValueError("the arrays do not hold together")
        return read
    except (KeyError, IndexError, ValueError) as exc:
        log.debug("ignoring the label cache %s (%s)", cache.path, exc)
        return None


def _save(cache: CacheFile, read: _CocoRead, json_key: np.ndarray) -> None:
    if read.first is not None and not isinstance(read.first, str):
        return
    arrays: dict[str, np.ndarray] = {"json.key": json_key}
    try:
        arrays["category_ids"] = np.array(read.category_ids, np.int64)
    except OverflowError:  # ids beyond 64 bits: read again each time
        return
    put_strings(arrays, "first", [] if read.first is None else [read.first])
    put_strings(arrays, "images_dir", [str(read.images_dir)])
    put_strings(arrays, "file_names", read.file_names)
    put_strings(arrays, "names", read.names)
    put_strings(arrays, "problems.message", [m for m, _ in read.problems])
    put_strings(arrays, "problems.kind", [k for _, k in read.problems])
    put_strings(arrays, "notes.kind", [k for k, _ in read.notes])
    put_strings(arrays, "notes.message", [m for _, m in read.notes])
    arrays.update({"image.keys": read.image_keys, "ids": read.ids, "sizes": read.sizes,
                   "keep": read.keep, "offsets": read.offsets, "boxes": read.boxes,
                   "labels": read.labels, "ignore": read.ignore})
    cache.save(arrays, len(read.files))


class CocoDataset(DetectionDataset):
    """A COCO annotation file. The categories, sorted by id, are the contiguous classes 0..C-1
    (``category_ids`` maps back). ``iscrowd`` boxes are kept with ``ignore`` set; boxes under
    one pixel wide or high are dropped; the images keep the JSON's order and ids. An image file
    listed under several image ids is kept under the first (the other entries are problems);
    repeated annotation ids are noted, and renumbered in :meth:`ground_truth`."""

    format = "coco"

    def __init__(self, path: Path, images: Path | None = None, strict: bool = False) -> None:
        cache = CacheFile("coco", f"{os.path.abspath(path)}\0{path}\0{images}\0"
                          f"{'' if images is None else os.path.abspath(images)}")
        json_key = file_keys([str(path)])  # before reading it
        read = _from_cache(cache, path, images, json_key)
        if read is None:
            read = self._read(path, images)
            if len(read.files) >= cache_module.MIN_IMAGES:  # (saves the work of _save)
                _save(cache, read, json_key)
        problems = Problems(strict)
        for message, kind in read.problems:
            problems.add(message, kind)
        for kind, message in read.notes:
            problems.note(message, kind)
        self.images_dir = read.images_dir
        keep = read.keep.tolist()
        super().__init__(
            source=path, split=split_of_json(path), names=read.names,
            category_ids=read.category_ids,
            files=[f for f, k in zip(read.files, keep, strict=True) if k],
            image_ids=read.ids[read.keep], sizes=read.sizes[read.keep], boxes=read.boxes,
            labels=read.labels, ignore=read.ignore, problems=problems, offsets=read.offsets,
        )
        self.from_cache = read.from_cache
        self.labels_parsed = 0 if read.from_cache else 1
        self.sources.files.update(f for f, k in zip(read.files, keep, strict=True)
                                  if not k)  # left out
        self.sources.folders.add(self.images_dir)

    @classmethod
    def _read(cls, path: Path, images: Path | None) -> _CocoRead:
        """The annotation file read and checked, its problems collected (not raised)."""
        data = read_coco_json(path)
        problems = Problems()
        category_ids, names = _categories(path, data)
        entries = data["images"]
        if not entries:
            raise DataError(f"{path}: the 'images' list is empty")
        first = entries[0].get("file_name") if isinstance(entries[0], dict) else None
        images_dir = coco_images_dir(path, images, first)

        ids, files, sizes, file_names = [], [], [], []
        for k, im in enumerate(entries):
            try:
                if not isinstance(im, dict):
                    raise TypeError(f"not an object but {type(im).__name__}")
                if json_number(im["id"], "'id'") != int(im["id"]):
                    raise ValueError(f"'id' is {im['id']!r}, not a whole number")
                ids.append(int(im["id"]))
                if not isinstance(im["file_name"], str):
                    raise TypeError(f"'file_name' is {im['file_name']!r:.40}, not text")
                file_names.append(im["file_name"])
                files.append(images_dir / file_names[-1])
                sizes.append((int(json_number(im["height"], "'height'")),
                              int(json_number(im["width"], "'width'"))))
                if not valid_size(*sizes[-1]) or not -(2**63) <= ids[-1] < 2**63:
                    raise ValueError("the id or the size is out of range")
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"{path}: image #{k} ({im!r:.80}) needs 'id', 'file_name', "
                                f"'width' and 'height' ({type(exc).__name__}: {exc})") from None
        if len(set(ids)) != len(ids):
            seen: dict[int, int] = {}
            k, j = next((k, seen[i]) for k, i in enumerate(ids) if seen.setdefault(i, k) != k)
            raise DataError(f"{path}: image ids are not unique: image #{j} ({files[j]}) and "
                            f"image #{k} ({files[k]}) are both id {ids[k]} (files merged from "
                            "several whose ids all start at 1 repeat them; number them again)")
        index = {image_id: k for k, image_id in enumerate(ids)}
        skip = np.zeros(len(ids), bool)
        keys = []  # what of each image file the problems depend on (see _image_key)
        first_entry: dict[tuple[int, int], int] = {}  # (device, inode) -> entry listing it
        for k, file in enumerate(files):
            try:
                found = file.stat()
            except OSError:
                found = None
            keys.append(_image_key(found))
            if found is None or not stat.S_ISREG(found.st_mode):
                problems.add(f"{path}: image id {ids[k]}: {file} not found", NO_IMAGE)
                skip[k] = True
                continue
            first = first_entry.setdefault((found.st_dev, found.st_ino), k)
            if first != k:  # the same file (by another name, a link too) under another id
                problems.add(f"{path}: image id {ids[k]}: {file} is the image file of image id "
                             f"{ids[first]} too ({files[first]}); an image is listed once, so "
                             "the first entry is kept and this one left out with its "
                             "annotations", REPEATED_IMAGE)
                skip[k] = True
        note_annotation_ids(path, data["annotations"], problems)

        img, labels, boxes, crowd = cls._read_annotations(
            path, data["annotations"], index, category_ids, np.array(sizes, np.int64), problems,
            skip,
        )
        keep = ~skip
        order = np.argsort(img, kind="stable")
        rows = keep[img[order]]  # the boxes of the images kept, image by image
        counts = np.bincount(img, minlength=len(ids))[keep]
        first_name = entries[0].get("file_name") if isinstance(entries[0], dict) else None
        return _CocoRead(
            images_dir=images_dir, first=first_name, names=names, category_ids=category_ids,
            files=files, file_names=file_names, image_keys=np.array(keys, np.int64).reshape(-1, 3),
            ids=np.array(ids, np.int64), sizes=np.array(sizes, np.int64).reshape(-1, 2),
            keep=keep, offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            boxes=boxes[order][rows], labels=labels[order][rows], ignore=crowd[order][rows],
            problems=list(zip(problems.messages, problems.kinds, strict=True)),
            notes=list(problems.notes),
        )

    @staticmethod
    def _read_annotations(
        path: Path,
        anns: list[Any],
        index: dict[int, int],
        category_ids: list[int],
        sizes: np.ndarray,
        problems: Problems,
        skip: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image index, class, x1 y1 x2 y2 box and crowd flag of every usable annotation; the
        images of bad annotations are marked in ``skip``."""
        label_of = {c: k for k, c in enumerate(category_ids)}
        n = len(anns)
        ann_ids: list[Any] = [None] * n
        img = np.full(n, -1, np.int64)
        label = np.full(n, -1, np.int64)
        xywh = np.zeros((n, 4))
        crowd = np.zeros(n, bool)
        malformed = np.zeros(n, bool)
        for j, a in enumerate(anns):
            try:
                ann_ids[j] = a.get("id", f"#{j}") if isinstance(a, dict) else f"#{j}"
                # the image first: a malformed annotation of a known image skips that image
                img[j] = image_index(a["image_id"], index)
                _, category_id, xywh[j], crowd[j] = annotation_fields(a)
                label[j] = label_of.get(category_id, -1)
            except MALFORMED_ANNOTATION as exc:
                malformed[j] = True
                problems.add(f"{path}: annotation #{j} (id {ann_ids[j]}): malformed "
                             f"({type(exc).__name__}: {exc}); needs a numeric image_id and "
                             "category_id and a bbox of 4 numbers (and numbers for id, iscrowd "
                             "and area, when given)")
        boxes = xywh.copy()
        boxes[:, 2:] += boxes[:, :2]
        size = sizes[np.maximum(img, 0)]
        faults = box_faults(boxes, size)
        bad = malformed | (img < 0) | (label < 0) | (faults != OK)
        for j in np.flatnonzero(bad & ~malformed):
            where = f"{path}: annotation id {ann_ids[j]}"
            if img[j] < 0:
                problems.add(f"{where}: image_id {anns[j]['image_id']!r} is not in 'images'",
                             NO_IMAGE)
            elif label[j] < 0:
                problems.add(f"{where}: category_id {anns[j]['category_id']!r} is not in "
                             "'categories'", CLASS)
            else:
                problems.add(f"{where}: {describe_fault(faults[j], boxes[j], tuple(size[j]))}",
                             BOX)
        skip[img[bad & (img >= 0)]] = True
        boxes = clip_boxes(boxes, size)
        use = ~bad & large_enough(boxes)
        for j in np.flatnonzero(~bad & ~use):
            problems.note(f"{path}: annotation id {ann_ids[j]}: {describe_small(boxes[j])}")
        return img[use], label[use], boxes[use], crowd[use]

    def ground_truth(self) -> dict[str, Any]:
        """The annotation file itself, limited to this dataset's images, as the metric's
        ground truth: COCO's own ``area`` (of the segmentation) and crowd regions kept. The
        annotations keep their ids when those are distinct positive integers; else (an id
        missing, repeated or not usable, see :func:`note_annotation_ids`) they are numbered
        1, 2, ... by their place in the file, since pycocotools keys annotations by id."""
        data = read_coco_json(self.source)
        kept = set(self.image_ids.tolist())
        valid = []  # those the reader did not skip as malformed (it reported them)
        for k, a in enumerate(data["annotations"]):
            try:
                image_id, _, bbox, crowd = annotation_fields(a)
            except MALFORMED_ANNOTATION:
                continue
            if image_id in kept:
                valid.append((k, a, bbox, crowd))
        ids = [a.get("id") for _, a, _, _ in valid]
        renumber = not all(usable_id(i) for i in ids) or len(set(ids)) != len(ids)
        anns = [{**a, "id": k + 1 if renumber else a["id"], "bbox": bbox,
                 "area": a.get("area", bbox[2] * bbox[3]), "iscrowd": int(crowd)}
                for k, a, bbox, crowd in valid]
        return {
            "images": [im for im in data["images"] if im["id"] in kept],
            "annotations": anns,
            "categories": data["categories"],
        }
