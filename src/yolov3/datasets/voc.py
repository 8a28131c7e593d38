"""Pascal VOC: an XML file per image (``Annotations/``) beside the images (``JPEGImages/``)."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from yolov3.classes import name_fault, read_names
from yolov3.datasets.base import DetectionDataset, image_ids, valid_size
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
    Entries,
    file_keys,
    listed_files,
    listed_images,
    ranges,
    reuse_or_parse,
)
from yolov3.datasets.problems import BOX, CLASS, MALFORMED, NO_IMAGE, NO_LABEL, Problems
from yolov3.errors import DataError

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
    """(annotations folder, images folder) when ``root`` is laid out as VOC (.xml files in
    the annotations folder or its sub-folders), else None."""
    ann = next((root / f for f in ANNOTATION_FOLDERS
                if (root / f).is_dir() and any((root / f).rglob("*.xml"))), None)
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
        if name is None or box is None:
            raise DataError(f"{path}: object {k} has no <name> or no <bndbox>")
        fault = name_fault(name.strip())
        if fault is not None:
            raise DataError(f"{path}: object {k}: its <name> {name!r}: {fault}")
        names.append(name.strip())
        boxes.append([_number(box, path, t) for t in ("xmin", "ymin", "xmax", "ymax")])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    xyxy = np.array(boxes, np.float64).reshape(-1, 4) - np.array([1.0, 1.0, 0.0, 0.0])
    filename = (root.findtext("filename") or "").strip()
    return VocFile(filename, (height, width), names, xyxy, np.array(difficult, bool))


def annotation_files(ann_dir: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The annotation files under ``ann_dir`` (in sub-folders too) by file name without
    ``.xml`` (VOC pairs an annotation with its image by that name, as darknet's voc_label.py
    does): each as its path relative to ``ann_dir`` without ``.xml``, sorted by name; and the
    (file, first file) pairs of those whose name an earlier one (by path) has already."""
    first: dict[str, str] = {}
    repeated = []
    for rel in listed_files(ann_dir, ".xml"):
        stem = rel.rpartition("/")[2]
        if stem in first:
            repeated.append((rel, first[stem]))
        else:
            first[stem] = rel
    return dict(sorted(first.items())), repeated


def _xml_paths(ann_dir: Path, stems: list[str]) -> list[str]:
    """``str(ann_dir / f"{stem}.xml")`` of each stem (joined as text for plain names)."""
    prefix = str(ann_dir) + os.sep
    plain = (os.sep, os.altsep) if os.altsep else (os.sep,)
    return [prefix + s + ".xml" if not any(c in s for c in plain) else
            str(ann_dir / f"{s}.xml") for s in stems]


def parse_voc_files(paths: list[str]) -> Entries:
    """:func:`parse_voc_xml` of each file: per file the fields ``error`` (the message, or "")
    ``filename`` and ``size``, the rows ``names``, ``boxes`` and ``difficult``."""
    error, filename, size, counts = [], [], [], []
    names: list[str] = []
    boxes, difficult = [np.zeros((0, 4))], [np.zeros(0, bool)]
    for path in paths:
        try:
            item = parse_voc_xml(Path(path))
        except DataError as exc:
            error.append(str(exc))
            filename.append("")
            size.append((0, 0))
            counts.append(0)
            continue
        error.append("")
        filename.append(item.filename)
        size.append(item.size)
        counts.append(len(item.names))
        names += item.names
        boxes.append(item.boxes)
        difficult.append(item.difficult)
    return Entries(np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
                   {"error": error, "filename": filename,
                    "size": np.array(size, np.int64).reshape(-1, 2)},
                   {"names": names, "boxes": np.concatenate(boxes),
                    "difficult": np.concatenate(difficult)})


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
    in the root, else every object name in the annotation files, sorted. Annotation files may
    lie in sub-folders of the annotations folder; each is paired with its image by file name
    (see :func:`annotation_files`), and ``xml_files[i]`` is image i's. ``difficult`` boxes
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
        xml_of, repeated = annotation_files(ann_dir)
        all_stems = list(xml_of)
        if names is None and (root / CLASSES_FILE).is_file():
            names = read_names(root / CLASSES_FILE)
        id_of = dict(zip(all_stems, image_ids(all_stems).tolist(), strict=True))
        wanted = _split_stems(root, all_stems, split)
        stems = [s for s in dict.fromkeys(all_stems if names is None else wanted) if s in xml_of]
        xmls = _xml_paths(ann_dir, [xml_of[s] for s in stems])
        cache = CacheFile("voc", f"{os.path.abspath(ann_dir)}\0{ann_dir}\0{split}\0"
                          f"{names is None}")
        parsed, self.labels_parsed, arrays = reuse_or_parse(
            cache, xmls, file_keys(xmls), lambda todo: parse_voc_files([xmls[i] for i in todo]),
            fields=("error", "filename", "size"), rows=("names", "boxes", "difficult"))
        if arrays is not None:
            cache.save(arrays, len(stems))
        error, size = parsed.fields["error"], np.asarray(parsed.fields["size"], np.int64)
        row_names = parsed.rows["names"]
        if names is None:
            usable = np.repeat([not e for e in error], parsed.counts)
            names = sorted({n for n, ok in zip(row_names, usable.tolist(), strict=True) if ok})
        label_of = {n: k for k, n in enumerate(names)}
        image_of = {p.stem: p for p in reversed(listed_images(self.images_dir)[0])}
        index = {stem: i for i, stem in enumerate(stems)}
        wanted_xmls = _xml_paths(ann_dir, [xml_of.get(s, s) for s in wanted])

        # The stems that have a usable annotation and image; the others' problems, by place.
        found: list[tuple[int, str, str]] = []  # (place in wanted, message, kind)
        place_of = {stem: place for place, stem in reversed(list(enumerate(wanted)))}
        found += [(place_of[stem], f"{ann_dir / rel}.xml: has the file name of "
                   f"{ann_dir / xml_of[stem]}.xml, and VOC pairs annotations with images by "
                   "file name: rename one; this one is left out", MALFORMED)
                  for rel, _ in repeated if (stem := rel.rpartition("/")[2]) in place_of]
        places, entries, files = [], [], []
        for place, (stem, xml) in enumerate(zip(wanted, wanted_xmls, strict=True)):
            i = index.get(stem)
            if i is None:
                found.append((place, f"{xml}: listed in the {split} split but missing", NO_LABEL))
                continue
            if error[i]:
                found.append((place, error[i], MALFORMED))
                continue
            image = image_of.get(stem)  # list_images lists files only
            if image is None:
                image = self.images_dir / parsed.fields["filename"][i]
                if not image.is_file():
                    found.append((place, f"{xml}: its image ({stem}.* or "
                                  f"{parsed.fields['filename'][i]!r}) is not in "
                                  f"{self.images_dir}", NO_IMAGE))
                    continue
            places.append(place)
            entries.append(i)
            files.append(image)

        # Their objects checked at once, as each image's alone.
        good = np.array(entries, np.int64)
        counts = parsed.counts[good]
        rows = ranges(parsed.offsets[:-1][good], counts)
        owner = np.repeat(np.arange(len(good)), counts)
        first_row = np.cumsum(counts) - counts
        boxes = np.asarray(parsed.rows["boxes"], np.float64).reshape(-1, 4)[rows]
        size_rows = size[good][owner] if len(rows) else np.zeros((0, 2), np.int64)
        names_rows = [row_names[r] for r in rows.tolist()]
        cls = np.array([label_of.get(n, -1) for n in names_rows], np.int64)
        faults = box_faults(boxes, size_rows)
        bad = np.zeros(len(good), bool)
        bad[owner[(cls < 0) | (faults != OK)]] = True
        for g in np.flatnonzero(bad).tolist():
            lo, hi = first_row[g], first_row[g] + counts[g]
            xml, hw = wanted_xmls[places[g]], tuple(int(v) for v in size[good[g]])
            found += [(places[g], f"{xml}: object {k + 1}: class {names_rows[lo + k]!r} is not "
                       "one of the names", CLASS) for k in np.flatnonzero(cls[lo:hi] < 0)]
            found += [
                (places[g], f"{xml}: object {k + 1}: "
                 f"{describe_fault(faults[lo + k], boxes[lo + k], hw)}", BOX)
                for k in np.flatnonzero(faults[lo:hi] != OK)
            ]
        xyxy = clip_boxes(boxes, size_rows)
        keep = large_enough(xyxy)
        for r in np.flatnonzero(~keep & ~bad[owner]).tolist():
            g = owner[r]
            problems.note(f"{wanted_xmls[places[g]]}: object {r - first_row[g] + 1}: "
                          f"{describe_small(xyxy[r])}")
        found.sort(key=lambda item: item[0])  # stable: each image's in their order
        for _, message, kind in found:
            problems.add(message, kind)
        kept = ~bad
        rows_kept = keep & kept[owner]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(owner[rows_kept],
                                                             minlength=len(good))[kept])])
        difficult = np.asarray(parsed.rows["difficult"], bool)[rows]
        super().__init__(
            source=root, split=split, names=names, category_ids=None,
            files=[f for f, k in zip(files, kept.tolist(), strict=True) if k],
            image_ids=np.array([id_of[wanted[places[g]]] for g in np.flatnonzero(kept)],
                               np.int64),
            sizes=size[good][kept].reshape(-1, 2), boxes=xyxy[rows_kept], labels=cls[rows_kept],
            ignore=difficult[rows_kept], problems=problems, offsets=offsets,
        )
        self.from_cache = cache.loaded_stamp > 0 and self.labels_parsed == 0
        self.xml_files = [wanted_xmls[places[g]] for g in np.flatnonzero(kept)]
        # the annotation files are those in ann_dir
        self.sources.files |= {root / CLASSES_FILE, *(root / "ImageSets" / "Main" / f"{s}.txt"
                                                      for s in ("train", "val", "test"))}
        self.sources.folders |= {ann_dir, self.images_dir}
