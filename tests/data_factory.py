"""Small datasets written by hand in each format (independently of the converter), holding the
same images and boxes, for the dataset, conversion and evaluation tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools.coco import COCO  # the dev extra's reference COCOeval
from pycocotools.cocoeval import COCOeval

NAMES = ["cat", "dog", "zebra"]  # sorted: Pascal VOC's default class order is by name
CATEGORY_IDS = [1, 3, 90]  # COCO ids with gaps, to check the mapping both ways

# file name, (height, width), objects: (class, x1, y1, x2, y2, ignore) in pixels
IMAGES = [
    ("1.png", (48, 64), [(0, 4, 6, 30, 40, False), (2, 10.5, 2, 60, 20.25, False)]),
    ("2.JPG", (60, 80), [(1, 0, 0, 80, 60, False), (0, 20, 30, 41, 55, True)]),
    ("3.bmp", (50, 40), []),
    ("4.jpeg", (30, 90), [(2, 33.75, 1, 88, 29, False)]),
]


def write_pictures(folder: Path, seed: int = 0) -> None:
    """Random pictures of the sizes in :data:`IMAGES` (upper-case extensions included)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (h, w), _ in IMAGES:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        fmt = {".JPG": "JPEG", ".jpeg": "JPEG"}.get(Path(name).suffix)
        Image.fromarray(pixels).save(folder / name, format=fmt)


def expected() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """file name -> (boxes float32, labels int64, ignore bool) as every reader must return."""
    out = {}
    for name, _, objects in IMAGES:
        rows = np.array([o[1:5] for o in objects], np.float32).reshape(-1, 4)
        out[name] = (rows, np.array([o[0] for o in objects], np.int64),
                     np.array([o[5] for o in objects], bool))
    return out


def coco_json(file_names: list[str] | None = None) -> dict:
    """The dataset as a COCO annotation dict (image ids 1.., category ids 1, 3, 90)."""
    images, anns = [], []
    for k, (name, (h, w), objects) in enumerate(IMAGES, 1):
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        for cls, x1, y1, x2, y2, crowd in objects:
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": CATEGORY_IDS[cls],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                         "iscrowd": int(crowd)})
    cats = [{"id": c, "name": n, "supercategory": "animal"}
            for c, n in zip(CATEGORY_IDS, NAMES, strict=True)]
    return {"images": images, "annotations": anns, "categories": cats}


def write_coco(root: Path) -> Path:
    """``root/instances_val.json`` with the images in ``root/images/``."""
    write_pictures(root / "images")
    path = root / "instances_val.json"
    path.write_text(json.dumps(coco_json()))
    return path


def write_yolo(root: Path) -> Path:
    """``root/images/val``, ``root/labels/val`` and ``root/data.yaml``."""
    write_pictures(root / "images" / "val")
    (root / "labels" / "val").mkdir(parents=True)
    for name, (h, w), objects in IMAGES:
        lines = [f"{cls} {(x1 + x2) / 2 / w!r} {(y1 + y2) / 2 / h!r} "
                 f"{(x2 - x1) / w!r} {(y2 - y1) / h!r}\n"
                 for cls, x1, y1, x2, y2, _ in objects]
        if lines:  # an image without objects may have no label file
            (root / "labels" / "val" / Path(name).with_suffix(".txt")).write_text("".join(lines))
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/val\nval: images/val\nnames: [" + ", ".join(NAMES) + "]\n"
    )
    return root / "data.yaml"


def voc_xml(name: str, size: tuple[int, int], objects: list) -> str:
    h, w = size
    parts = [f"<annotation><folder>x</folder><filename>{name}</filename>",
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"]
    for cls, x1, y1, x2, y2, hard in objects:
        # VOC corners are 1-based pixel indices
        parts.append(f"<object><name>{NAMES[cls]}</name><pose>Unspecified</pose>"
                     f"<difficult>{int(hard)}</difficult><bndbox><xmin>{x1 + 1:g}</xmin>"
                     f"<ymin>{y1 + 1:g}</ymin><xmax>{x2:g}</xmax><ymax>{y2:g}</ymax>"
                     "</bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_voc(root: Path) -> Path:
    """``root/Annotations/*.xml`` and ``root/JPEGImages/``."""
    write_pictures(root / "JPEGImages")
    (root / "Annotations").mkdir(parents=True)
    for name, size, objects in IMAGES:
        (root / "Annotations" / Path(name).with_suffix(".xml").name).write_text(
            voc_xml(name, size, objects))
    return root


def write_photo_dataset(root: Path, photos: dict[str, Path], cup_id: int, motorbike_id: int,
                        extra: list[dict] | None = None) -> Path:
    """A COCO dataset of two real photos with boxes annotated by hand from the pixels (read off
    a 2x enlargement with a 20-pixel grid, edges to a pixel or two): the cup in coffee.png from
    its rim (x 172..408, top y 18) to the bottom of its handle (y 306), saucer and spoon left
    out; the motorbike in motorcycle_left.png from its tail light (x 92) to its front tyre
    (x 684, y 451) and the top of its right mirror (y 15). The official yolov3-tiny's boxes
    overlap them by IoU about 0.8, so its AP50 on this set is 1."""
    (root / "images").mkdir(parents=True)
    images, anns = [], []
    for k, (name, box, cat) in enumerate([("coffee", (172, 18, 408, 306), cup_id),
                                          ("motorcycle_left", (92, 15, 684, 451), motorbike_id)],
                                         1):
        with Image.open(photos[name]) as im:
            im.convert("RGB").save(root / "images" / f"{name}.png")
            w, h = im.size
        images.append({"id": k, "file_name": f"{name}.png", "width": w, "height": h})
        x1, y1, x2, y2 = box
        anns.append({"id": k, "image_id": k, "category_id": cat, "iscrowd": 0,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
    cats = [{"id": cup_id, "name": "cup"}, {"id": motorbike_id, "name": "motorcycle"},
            *(extra or [])]
    path = root / "instances_val.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def reference_cocoeval(gt: dict[str, Any], detections: list[dict[str, Any]]) -> COCOeval:
    """pycocotools' own COCOeval (the Python original that faster-coco-eval, which the metric
    runs, ports) of ``detections`` against ``gt``, evaluated, accumulated and summarised."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([dict(d) for d in detections]), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under ``root``: a link and its target, a file and its bytes, or a folder."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif path.is_file():
                found[str(path.relative_to(root))] = ("file", path.read_bytes())
            else:
                found[str(path.relative_to(root))] = ("folder", "")
    return found
