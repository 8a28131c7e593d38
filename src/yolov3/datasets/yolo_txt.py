"""YOLO txt labels: one ``class xc yc w h`` line per object, normalised, a file per image; the
images listed by folders or list files (a dataset YAML, or darknet's ``.data``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from yolov3.datasets.base import DetectionDataset, SourcePaths, image_ids
from yolov3.datasets.boxes import OK, OUTSIDE, box_faults
from yolov3.datasets.problems import BOX, CLASS, MALFORMED, NO_IMAGE, Problems
from yolov3.errors import DataError
from yolov3.fileio import expand_home
from yolov3.images import is_image_file, list_images

# darknet's ``replace_image_to_label``: the labels tree mirrors the images tree.
_IMAGE_FOLDERS = ("images", "JPEGImages")


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
            images += list_images(path)
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
        keep, labels, boxes = [], [], []
        for image in images:
            parsed = parse_label_file(label_path(image), len(names), problems)
            if parsed is not None:
                keep.append(image)
                labels.append(parsed[0])
                boxes.append(parsed[1])
        super().__init__(
            source=source, split=split, names=names, category_ids=None, files=keep,
            image_ids=image_ids([p.stem for p in keep]), sizes=None, boxes=boxes, labels=labels,
            ignore=[np.zeros(len(c), bool) for c in labels], problems=problems,
        )
        kept = set(keep)
        self.sources.files.update(image for image in images if image not in kept)
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
