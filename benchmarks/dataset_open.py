"""Seconds and peak memory to open a large dataset: the first time (no label cache), from the
cache, and after one label file changed (the cache updated for that file).

    .venv/bin/python benchmarks/dataset_open.py [--images 120000] [--format yolo|coco|voc]
        [--out DIR] [--faults 0.001] [--seed 0]

Generates a dataset of ``--images`` tiny JPEGs (one encoded image written N times) with 1-10
random boxes each, of which a fraction ``--faults`` has a class that is not the dataset's (a
problem: the image is skipped) and as many a box under one pixel (dropped with a note): YOLO
txt (``data.yaml``, ``images/train``, ``labels/train``), COCO (one ``instances_train.json``) or
Pascal VOC (an XML file per image, ``classes.txt``; split ``all``). ``--out`` keeps it (and
reuses one already there); else it is written to a temporary folder and deleted. Each open runs
in a fresh process with ``XDG_CACHE_HOME`` pointed at a folder of this run, so that its peak
RSS is its own; the imports (torch's CUDA libraries, about 0.9 GB) come before the timing and
``open_rss_mb`` is the growth of the peak RSS over them. The files stay in the page cache after
they are written: "cold" means no label cache, not a cold disk (that needs ``echo 3 >
/proc/sys/vm/drop_caches`` as root between the runs).

Ends with ``open_cold_s=``, ``open_cached_s=``, ``open_touched_s=``, ``open_cached_again_s=``,
``peak_rss_mb=`` and ``open_rss_mb=`` (the largest of the opens), ``cache_mb=`` and
``same_content=`` (each cached dataset equals the one read without a cache, files, ids, sizes,
boxes, problems and notes alike).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_CLASSES = 80
SPLIT = "train"
RACY_S = 2.1


def tiny_jpeg() -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def random_boxes(rng: np.random.Generator, faulty: bool) -> tuple[np.ndarray, np.ndarray]:
    """Classes and cx, cy, w, h fractions of 1-10 boxes inside the image."""
    n = int(rng.integers(1, 11))
    wh = rng.uniform(0.05, 0.5, (n, 2))
    centre = wh / 2 + rng.uniform(0, 1, (n, 2)) * (1 - wh)
    classes = rng.integers(0, NUM_CLASSES, n)
    if faulty:
        classes[0] = NUM_CLASSES  # out of range: the image is skipped with a problem
    return classes, np.concatenate([centre, wh], 1)


def write_images(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_jpeg()
    names = [f"{k:012d}.jpg" for k in range(1, count + 1)]
    for name in names:
        with open(folder / name, "wb") as f:
            f.write(data)
    return names


def generate(root: Path, fmt: str, count: int, faults: float, seed: int) -> Path:
    """The dataset in ``root``; returns what ``open_dataset`` takes."""
    rng = np.random.default_rng(seed)
    faulty = rng.uniform(size=count) < faults
    tiny = (rng.uniform(size=count) < faults) & ~faulty  # one box under a pixel: a note
    if fmt == "yolo":
        names = write_images(root / "images" / SPLIT, count)
        labels = root / "labels" / SPLIT
        labels.mkdir(parents=True, exist_ok=True)
        for name, bad, small in zip(names, faulty, tiny, strict=True):
            classes, boxes = random_boxes(rng, bad)
            lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n"
                     for c, (x, y, w, h) in zip(classes, boxes, strict=True)]
            if small:
                lines.append("0 0.5 0.5 0.0 0.2\n")  # zero width: dropped with a note
            (labels / name).with_suffix(".txt").write_text("".join(lines))
        class_names = ", ".join(f"c{k}" for k in range(NUM_CLASSES))
        (root / "data.yaml").write_text(f"path: .\n{SPLIT}: images/{SPLIT}\n"
                                        f"names: [{class_names}]\n")
        return root / "data.yaml"
    if fmt == "coco":
        names = write_images(root / "images", count)
        images, anns = [], []
        for k, (name, bad, small) in enumerate(zip(names, faulty, tiny, strict=True), 1):
            images.append({"id": k, "file_name": name, "width": 64, "height": 48})
            classes, boxes = random_boxes(rng, False)
            if small:
                boxes[0, 2] = 0.005  # 0.32 pixels wide
            for c, (x, y, w, h) in zip(classes, boxes, strict=True):
                xywh = [round((x - w / 2) * 64, 2), round((y - h / 2) * 48, 2),
                        round(w * 64, 2), round(h * 48, 2)]
                anns.append({"id": len(anns) + 1, "image_id": k,
                             "category_id": 99 if bad else int(c) + 1, "bbox": xywh,
                             "area": xywh[2] * xywh[3], "iscrowd": 0})
        cats = [{"id": k + 1, "name": f"c{k}"} for k in range(NUM_CLASSES)]
        path = root / f"instances_{SPLIT}.json"
        path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
        return path
    names = write_images(root / "JPEGImages", count)
    (root / "Annotations").mkdir(exist_ok=True)
    (root / "classes.txt").write_text("".join(f"c{k}\n" for k in range(NUM_CLASSES)))
    for name, bad, small in zip(names, faulty, tiny, strict=True):
        classes, boxes = random_boxes(rng, False)
        if small:
            boxes[0, 2] = 0.005  # 0.32 pixels wide
        objects = "".join(
            f"<object><name>{'nothing' if bad else f'c{c}'}</name><difficult>{int(k == 0)}"
            f"</difficult><bndbox><xmin>{(x - w / 2) * 64 + 1:.2f}</xmin>"
            f"<ymin>{(y - h / 2) * 48 + 1:.2f}</ymin><xmax>{(x + w / 2) * 64:.2f}</xmax>"
            f"<ymax>{(y + h / 2) * 48:.2f}</ymax></bndbox></object>"
            for k, (c, (x, y, w, h)) in enumerate(zip(classes, boxes, strict=True)))
        (root / "Annotations" / name).with_suffix(".xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>64</width><height>48</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    return root


def digest(dataset) -> str:
    """A hash of everything the dataset holds (files, ids, sizes, boxes, problems)."""
    h = hashlib.sha256()
    for part in (
        "\0".join(map(str, dataset.files)).encode(), dataset.image_ids, dataset.sizes,
        dataset._offsets, dataset._boxes, dataset._labels, dataset._ignore,
        "\0".join(dataset.problems.messages + dataset.problems.kinds).encode(),
        "\0".join(k + m for k, m in dataset.problems.notes).encode(),
    ):
        h.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    return h.hexdigest()[:16]


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_once(data: str, split: str) -> None:
    """Run in a fresh process: open the dataset and print one JSON line about it."""
    from yolov3.datasets.open import open_dataset

    before = current_rss_mb()  # the imports (torch's CUDA libraries: about 0.9 GB)
    start = time.perf_counter()
    dataset = open_dataset(data, split)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": peak, "open_mb": peak - before,
                      "images": len(dataset),
                      "boxes": dataset.num_boxes, "problems": len(dataset.problems),
                      "notes": len(dataset.problems.notes),
                      "from_cache": getattr(dataset, "from_cache", None),
                      "digest": digest(dataset)}))


def timed_open(data: Path, split: str, cache_home: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    out = subprocess.run([sys.executable, __file__, "--open-once", str(data), "--split", split],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def touch_one(root: Path, fmt: str, data: Path) -> None:
    """Change one annotation: a YOLO label file or VOC XML gets one box more; COCO's one JSON
    is rewritten with one box more (the whole file changes, as it does in practice)."""
    if fmt == "yolo":
        label = root / "labels" / SPLIT / "000000000001.txt"
        label.write_text(label.read_text() + "1 0.5 0.5 0.25 0.25\n")
    elif fmt == "voc":
        xml = root / "Annotations" / "000000000001.xml"
        xml.write_text(xml.read_text().replace(
            "</annotation>", "<object><name>c1</name><bndbox><xmin>10</xmin><ymin>10</ymin>"
            "<xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"))
    else:
        coco = json.loads(data.read_text())
        coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": 1,
                                    "category_id": 2, "bbox": [10, 10, 10, 10], "area": 100,
                                    "iscrowd": 0})
        data.write_text(json.dumps(coco))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120_000)
    parser.add_argument("--format", choices=("yolo", "coco", "voc"), default="yolo")
    parser.add_argument("--out", type=Path, help="keep the dataset here (reused when present)")
    parser.add_argument("--faults", type=float, default=0.001)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--open-once", help=argparse.SUPPRESS)
    parser.add_argument("--split", default=SPLIT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.open_once:
        open_once(args.open_once, args.split)
        return

    work = Path(tempfile.mkdtemp(prefix="dataset_open_"))
    root = args.out or work / "data"
    try:
        marker = root / ".generated.json"
        wanted = {"format": args.format, "images": args.images, "faults": args.faults,
                  "seed": args.seed}
        data = {"yolo": root / "data.yaml", "coco": root / f"instances_{SPLIT}.json",
                "voc": root}[args.format]
        if marker.is_file() and json.loads(marker.read_text()) == wanted:
            print(f"reusing the dataset in {root}")
        else:
            if root.exists() and args.out is not None and any(root.iterdir()):
                raise SystemExit(f"{root}: not empty and not a dataset this script generated")
            root.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            data = generate(root, args.format, args.images, args.faults, args.seed)
            marker.write_text(json.dumps(wanted))
            print(f"generated {args.images} {args.format} images in {root} "
                  f"({time.perf_counter() - start:.1f} s)")
        # Files changed within RACY_NS of an open are read again by the next one (see
        # yolov3.datasets.cache): wait that long after writing, as a real dataset is older.
        time.sleep(RACY_S)
        split = "all" if args.format == "voc" else SPLIT
        cache_home = work / "cache"
        runs = {"cold": timed_open(data, split, cache_home)}
        runs["cached"] = timed_open(data, split, cache_home)
        touch_one(root, args.format, data)
        time.sleep(RACY_S)
        runs["touched"] = timed_open(data, split, cache_home)
        runs["cached_again"] = timed_open(data, split, cache_home)
        fresh = timed_open(data, split, work / "cache-fresh")  # the changed data, no cache
        caches = sorted(p for p in cache_home.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in caches)
        print(f"{args.format}: {runs['cold']['images']} images, {runs['cold']['boxes']} boxes, "
              f"{runs['cold']['problems']} problems, {runs['cold']['notes']} notes; "
              f"cache {len(caches)} file(s), {size / 1e6:.1f} MB")
        for name, r in runs.items():
            print(f"  {name:13s} {r['seconds']:6.2f} s  peak RSS {r['rss_mb']:6.0f} MB "
                  f"(open {r['open_mb']:4.0f} MB)  "
                  f"from_cache={r['from_cache']}  digest {r['digest']}")
        same = (runs["cold"]["digest"] == runs["cached"]["digest"]
                and runs["touched"]["digest"] == fresh["digest"] == runs["cached_again"]["digest"]
                and runs["touched"]["digest"] != runs["cold"]["digest"])
        print(f"open_cold_s={runs['cold']['seconds']:.2f}")
        print(f"open_cached_s={runs['cached']['seconds']:.2f}")
        print(f"open_touched_s={runs['touched']['seconds']:.2f}")
        print(f"open_cached_again_s={runs['cached_again']['seconds']:.2f}")
        print(f"peak_rss_mb={max(r['rss_mb'] for r in runs.values()):.0f}")
        print(f"open_rss_mb={max(r['open_mb'] for r in runs.values()):.0f}")
        print(f"cache_mb={size / 1e6:.1f}")
        print(f"same_content={same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
