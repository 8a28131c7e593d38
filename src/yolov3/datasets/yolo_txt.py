"""YOLO txt labels: one ``class xc yc w h`` line per object, normalised, a file per image; the
images listed by folders or list files (a dataset YAML, or darknet's ``.data``)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from yolov3.datasets.base import DetectionDataset, SourcePaths, image_ids
from yolov3.datasets.boxes import OK, OUTSIDE, box_faults
from yolov3.datasets.cache import (
    CacheFile,
    Entries,
    file_keys,
    listed_images,
    ranges,
    reuse_or_parse,
)
from yolov3.datasets.problems import BOX, CLASS, MALFORMED, NO_IMAGE, Problems
from yolov3.errors import DataError
from yolov3.fileio import expand_home
from yolov3.images import is_image_file

# darknet's ``replace_image_to_label``: the labels tree mirrors the images tree.
_IMAGE_FOLDERS = ("images", "JPEGImages")
# The decimals of the fractions (and scores) a label file is written with.
LABEL_DECIMALS = 6


def label_text(labels: np.ndarray, boxes: np.ndarray, image_hw: tuple[int, int],
               scores: np.ndarray | None = None) -> str:
    """The YOLO txt label file of one image: a ``class xc yc w h`` line per box (``class xc yc
    w h score`` with ``scores``), ``labels`` (n,) the class indices written as integers,
    ``boxes`` (n, 4) x1, y1, x2, y2 pixels written as the centre and size in fractions of the
    image's (height, width) ``image_hw``, each with :data:`LABEL_DECIMALS` decimals. The one
    writer of label files (``yolov3 data convert``, ``yolov3 detect --save-txt``)."""
    h, w = image_hw
    xyxy = np.asarray(boxes, np.float64).reshape(-1, 4) / np.array([w, h, w, h])
    columns = [np.asarray(labels, np.float64).reshape(-1, 1), (xyxy[:, :2] + xyxy[:, 2:]) / 2,
               xyxy[:, 2:] - xyxy[:, :2]]
    if scores is not None:
        columns.append(np.asarray(scores, np.float64).reshape(-1, 1))
    rows = np.concatenate(columns, axis=1)
    text = io.StringIO()
    np.savetxt(text, rows, fmt=["%d"] + [f"%.{LABEL_DECIMALS}f"] * (rows.shape[1] - 1))
    return text.getvalue()


def data_yaml(fields: dict[str, Any], header: str = "") -> bytes:
    """A dataset YAML (see :mod:`yolov3.datasets.open`) of ``fields`` in their order, lists
    such as ``names`` one item a line (a name is never folded over two), after the comment
    lines ``header``. The one writer of data.yaml files (``yolov3 data convert``, ``yolov3
    detect --save-txt``)."""
    return (header + yaml.safe_dump(fields, sort_keys=False, allow_unicode=True,
                                    default_flow_style=False)).encode()


def _txt_name(name: str) -> str:
    """``Path(name).with_suffix(".txt").name``."""
    dot = name.rfind(".")
    return (name[:dot] if 0 < dot < len(name) - 1 else name) + ".txt"


def label_paths(images: Sequence[Path]) -> list[str]:
    """``[str(label_path(p)) for p in images]``, the folder worked out once per folder."""
    prefix_of: dict[str, str | None] = {}
    out = []
    for image in images:
        text = str(image)
        head, sep, name = text.rpartition(os.sep)
        folder = head + sep
        if folder not in prefix_of:
            label, tail = str(label_path(image)), _txt_name(name)
            same = label == tail or label.endswith(os.sep + tail)
            prefix_of[folder] = label[: len(label) - len(tail)] if same else None
        prefix = prefix_of[folder]
        out.append(str(label_path(image)) if prefix is None else prefix + _txt_name(name))
    return out


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` (or ``JPEGImages``) folder of its path
    becomes ``labels`` and the extension ``.txt``; without such a folder, beside the image."""
    parts = list(image.parts)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in _IMAGE_FOLDERS:
            parts[k] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def resolve(raw: str | Path, bases: Sequence[Path]) -> Path:
    """``raw`` if absolute, else the first of ``bases / raw`` that exists (else the first)."""
    path = expand_home(raw)
    if path.is_absolute():
        return path
    candidates = [base / path for base in bases]
    return next((c for c in candidates if c.exists()), candidates[0])


def read_image_list(path: Path, problems: Problems) -> list[Path]:
    """The images a list file names, one per line (relative lines against the list's folder,
    else the current folder, as darknet runs); a missing image is a problem."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the image list ({exc})") from None
    images = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            image = resolve(line.strip(), [path.parent, Path.cwd()])
            if image.is_file():
                images.append(image)
            else:
                problems.add(f"{path}:{number}: image {line.strip()} not found", NO_IMAGE)
    return images


def collect_images(entries: str | Path | Sequence[str | Path], root: Path,
                   problems: Problems, sources: SourcePaths | None = None) -> list[Path]:
    """The images of a split given as a folder, a list file or an image, or a list of those
    (relative to ``root``). The folders and list files read are added to ``sources``."""
    entries = [entries] if isinstance(entries, str | Path) else list(entries)
    sources = SourcePaths() if sources is None else sources
    images: list[Path] = []
    for entry in entries:
        path = resolve(entry, [root])
        if path.is_dir():
            sources.folders.add(path)
            images += listed_images(path)[0]
        elif path.is_file() and is_image_file(path):
            images.append(path)
        elif path.is_file():
            sources.files.add(path)
            images += read_image_list(path, problems)
        else:
            raise DataError(f"{path}: the image folder or list does not exist")
    return images


def parse_label_file(path: Path, num_classes: int,
                     problems: Problems) -> tuple[np.ndarray, np.ndarray] | None:
    """Classes (n,) and boxes (n, 4) cx, cy, w, h fractions of the image from a label file,
    clipped to the image; None when the file has problems, which are added to ``problems``,
    each naming ``path:line``. A missing file is an image without objects; a box of zero width
    or height (after clipping) is dropped with a note."""
    empty = np.zeros(0, np.int64), np.zeros((0, 4))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return empty
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(f"{path}: cannot read ({exc}); a label file is UTF-8 text")
        return None
    numbered = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    errors = [(f"{path}:{n}: expected 5 fields (class xc yc w h), found {len(f)}", MALFORMED)
              for n, f in numbered if len(f) != 5]
    if not errors:
        try:
            values = np.array([f for _, f in numbered], np.float64).reshape(-1, 5)
        except ValueError:
            bad = next(n for n, f in numbered if not _all_numbers(f))
            errors = [(f"{path}:{bad}: not numbers", MALFORMED)]
    if errors:
        for message, kind in errors:
            problems.add(message, kind)
        return None
    lines = np.array([n for n, _ in numbered], np.int64)
    cls, cxcywh = values[:, 0], values[:, 1:]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    faults = box_faults(xyxy, np.array([1, 1]))
    bad_class = (cls != np.round(cls)) | (cls < 0) | (cls >= num_classes)
    errors = [(f"{path}:{n}: class {c:g} is out of range (the dataset has {num_classes} "
               f"classes, 0..{num_classes - 1})", CLASS)
              for n, c in zip(lines[bad_class], cls[bad_class], strict=True)]
    errors += [(f"{path}:{lines[j]}: box xc={cxcywh[j, 0]:g} yc={cxcywh[j, 1]:g} "
                f"w={cxcywh[j, 2]:g} h={cxcywh[j, 3]:g} "
                + ("lies outside the image (beyond 0..1)" if faults[j] == OUTSIDE else
                   "is not a box"), BOX)
               for j in np.flatnonzero(faults != OK)]
    for message, kind in errors:
        problems.add(message, kind)
    if errors:
        return None
    xyxy = np.clip(xyxy, 0, 1)
    cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
    empty_box = (cxcywh[:, 2:] <= 0).any(axis=1)
    for n in lines[empty_box]:
        problems.note(f"{path}:{n}: box has zero width or height (zero area); dropped")
    return cls[~empty_box].astype(np.int64), cxcywh[~empty_box]


# Label files parsed together: their fields converted in one call, their boxes checked at once.
_CHUNK = 4096


def parse_label_files(paths: Sequence[str], num_classes: int) -> Entries:
    """:func:`parse_label_file` of each of ``paths``, vectorised, with the same results and
    problems: per file the field ``skipped`` (it had problems), the rows ``classes`` and
    ``boxes``, and its problems and notes. Files that are not plain clean text (a problem,
    a note, a BOM-less decoding error, an unreadable file) go through :func:`parse_label_file`
    itself, so that the messages are its own."""
    parts = [_parse_chunk(paths[a : a + _CHUNK], num_classes)
             for a in range(0, len(paths), _CHUNK)]
    if not parts:
        return Entries(np.zeros(1, np.int64), {"skipped": np.zeros(0, bool)},
                       {"classes": np.zeros(0, np.int64), "boxes": np.zeros((0, 4))})
    return Entries.concat(parts)


def _parse_chunk(paths: Sequence[str], num_classes: int) -> Entries:
    n = len(paths)
    fields: list[str] = []
    counts = np.zeros(n, np.int64)
    slow: set[int] = set()  # for parse_label_file
    for k, path in enumerate(paths):
        try:
            with open(path, "rb") as f:
                data = f.read()
            text = data.decode("utf-8-sig")
        except FileNotFoundError:
            continue  # an image without objects
        except (OSError, UnicodeDecodeError):
            slow.add(k)
            continue
        rows = [line.split() for line in text.splitlines()]
        if not all(len(r) == 5 for r in rows):
            rows = [r for r in rows if r]  # blank lines
            if not all(len(r) == 5 for r in rows):
                slow.add(k)
                continue
        counts[k] = len(rows)
        for r in rows:
            fields += r
    try:
        values = np.array(fields, np.float64).reshape(-1, 5)
    except ValueError:  # not numbers somewhere: which files
        ends = np.cumsum(counts) * 5
        for k in np.flatnonzero(counts).tolist():
            try:
                np.array(fields[ends[k] - counts[k] * 5 : ends[k]], np.float64)
            except ValueError:
                slow.add(k)
        for k in sorted(slow, reverse=True):
            if counts[k]:
                del fields[ends[k] - counts[k] * 5 : ends[k]]
                counts[k] = 0
        values = np.array(fields, np.float64).reshape(-1, 5)
    # The computations of parse_label_file, on all rows at once.
    row_file = np.repeat(np.arange(n), counts)
    cls, cxcywh = values[:, 0], values[:, 1:]
    xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
    faults = box_faults(xyxy, np.array([1, 1]))
    bad_class = (cls != np.round(cls)) | (cls < 0) | (cls >= num_classes)
    xyxy = np.clip(xyxy, 0, 1)
    cxcywh = np.concatenate([(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], 1)
    empty_box = (cxcywh[:, 2:] <= 0).any(axis=1)
    bad = (faults != OK) | bad_class | empty_box
    slow.update(np.unique(row_file[bad]).tolist())
    skipped = np.zeros(n, bool)
    classes, boxes = np.where(bad, 0, cls).astype(np.int64), cxcywh
    entries = Entries(np.concatenate([[0], np.cumsum(counts)]), {"skipped": skipped},
                      {"classes": classes, "boxes": boxes})
    if not slow:
        return entries
    # Those files again, by parse_label_file, their rows put in their place.
    starts = np.cumsum(counts) - counts
    extra_classes, extra_boxes = [classes], [boxes]
    total = len(classes)
    for k in sorted(slow):
        found = Problems()
        parsed = parse_label_file(Path(paths[k]), num_classes, found)
        entries.problems += [(k, m, kind) for m, kind in zip(found.messages, found.kinds,
                                                             strict=True)]
        entries.notes += [(k, kind, m) for kind, m in found.notes]
        skipped[k] = parsed is None
        cls_k, boxes_k = parsed if parsed is not None else (np.zeros(0, np.int64),
                                                            np.zeros((0, 4)))
        starts[k], counts[k] = total, len(cls_k)
        total += len(cls_k)
        extra_classes.append(cls_k)
        extra_boxes.append(boxes_k)
    take = ranges(starts, counts)
    entries.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    entries.rows = {"classes": np.concatenate(extra_classes)[take],
                    "boxes": np.concatenate(extra_boxes)[take]}
    return entries


def _all_numbers(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields]
    except ValueError:
        return False
    return True


class YoloDataset(DetectionDataset):
    """Images with YOLO txt labels (see :func:`label_path` for where they are found).

    Boxes stay fractions until an image's size is known (its header, or the decoded image).
    ``sources`` are the folders and list files the images came from (see
    :meth:`source_paths`)."""

    format = "yolo"
    normalised = True

    def __init__(
        self,
        images: list[Path],
        names: list[str],
        source: Path,
        split: str,
        problems: Problems,
        sources: SourcePaths | None = None,
    ) -> None:
        labels = label_paths(images)
        num_classes = len(names)
        cache = CacheFile("yolo", f"{os.path.abspath(source)}\0{split}",
                          {"classes": num_classes})
        entries, self.labels_parsed, arrays = reuse_or_parse(
            cache, labels, file_keys(labels),
            lambda todo: parse_label_files([labels[i] for i in todo], num_classes),
            fields=("skipped",), rows=("classes", "boxes"))
        if arrays is not None:
            cache.save(arrays, len(images))
        for _, message, kind in entries.problems:
            problems.add(message, kind)
        for _, kind, message in entries.notes:
            problems.note(message, kind)
        keep = ~np.asarray(entries.fields["skipped"], bool)
        offsets = entries.offsets
        if keep.all():
            files = list(images)
        else:  # skipped images have no rows
            files = [p for p, k in zip(images, keep.tolist(), strict=True) if k]
            offsets = np.append(offsets[:-1][keep], offsets[-1])
        stems = [f[f.rfind(os.sep) + 1 : -4] for f, k in zip(labels, keep.tolist(), strict=True)
                 if k]
        boxes = entries.rows["boxes"]
        super().__init__(
            source=source, split=split, names=names, category_ids=None, files=files,
            image_ids=image_ids(stems), sizes=None, boxes=boxes, labels=entries.rows["classes"],
            ignore=np.zeros(len(boxes), bool), problems=problems, offsets=offsets,
        )
        self.from_cache = cache.loaded_stamp > 0 and self.labels_parsed == 0
        self.sources.files.update(p for p, k in zip(images, keep.tolist(), strict=True)
                                  if not k)
        if sources is not None:
            self.sources.update(sources)

    def source_paths(self) -> SourcePaths:
        """:meth:`DetectionDataset.source_paths` with the label file of every image (of
        those without one too: writing one would change the dataset)."""
        paths = super().source_paths()
        paths.files |= {label_path(p) for p in paths.files if is_image_file(p)}
        return paths


def read_darknet_data(path: Path) -> dict[str, str]:
    """The ``key = value`` lines of darknet's ``.data`` file (``classes``, ``train``,
    ``valid``, ``names``, ...)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    fields = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise DataError(f"{path}:{number}: expected 'key = value', found {line!r}")
        fields[key.strip()] = value.strip()
    return fields
