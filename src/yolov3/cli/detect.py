"""``yolov3 detect``: boxes on images and folders, as annotated pictures and JSON."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from yolov3.cli.common import (
    add_detection_args,
    add_model_args,
    at_least,
    check_img_size,
    device_from_args,
    model_from_args,
)
from yolov3.errors import DataError, YoloError
from yolov3.fileio import atomic_write, writable_dir
from yolov3.images import ImageFiles, list_images
from yolov3.inference.backends import BACKENDS, make_detector
from yolov3.inference.batching import letterboxed_batches
from yolov3.inference.detector import Detections
from yolov3.inference.draw import draw_detections


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images and folders",
        description="Detect objects in image files and folders (jpg, png, bmp, webp, ...). "
        "Writes an annotated copy of each image, DIR/detections.jsonl as the detections are "
        "found (one JSON record a line) and DIR/detections.json at the end, also of a run "
        "stopped with Ctrl-C.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    add_model_args(p)
    add_detection_args(p, conf=0.25, precision="auto")
    p.add_argument("--single-label", action="store_true",
                   help="keep only the best class of each box (default: every class above "
                   "--conf, as darknet does)")
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="class names, one per line (default: COCO's 80 names for 80 classes)")
    p.add_argument("--batch-size", type=at_least(1), default=1,
                   help="images per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=at_least(0), default=0,
                   help="processes that decode and letterbox images ahead of the model "
                   "(default: %(default)s)")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads of the engine, torch or onnxruntime (default: PyTorch's, "
                   "which follows OMP_NUM_THREADS, else one per core)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="engine: torch (batch norm folded into the convolutions) or "
                   "onnxruntime (CPU; the model is exported to ONNX first) (default: %(default)s)")
    p.add_argument("--out", default="runs/detect", metavar="DIR",
                   help="output folder for the pictures and detections.json "
                   "(default: %(default)s)")
    p.set_defaults(run=run)


def collect_images(paths: list[str], out: Path) -> tuple[list[Path], int]:
    """Image files named directly, and the image files found under named folders, sorted; and
    how many files of those folders were left out because they lie under the output folder
    ``out`` (an earlier run's annotated copies)."""
    out = out.resolve()
    found: list[Path] = []
    earlier = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path)
            if path.resolve() in out.parents:
                kept = [f for f in images if out not in f.resolve().parents]
                earlier += len(images) - len(kept)
                images = kept
            found += images
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not found:
        raise DataError(f"no images found in {', '.join(paths)} (looked for the file types "
                        "Pillow reads: jpg, png, bmp, webp, tif, ...)")
    clash = next((f for f in found if f.resolve().parent == out), None)
    if clash is not None:
        raise YoloError(f"--out {out} holds the input image {clash}: the annotated copies would "
                        "overwrite the inputs; choose another --out")
    return found, earlier


def _output_name(path: Path, used: set[str]) -> str:
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp",
                                                              ".webp") else ".png"
    name, k = path.stem + suffix, 1
    while name in used:
        name, k = f"{path.stem}_{k}{suffix}", k + 1
    used.add(name)
    return name


class DetectionFiles:
    """The detections of a run as they are found: each image's records are appended to
    ``DIR/detections.jsonl`` (one JSON record a line) and flushed at once, so that an
    interrupted or failed run keeps what was done; :meth:`finish` writes them all to
    ``DIR/detections.json``. Writing fails as one :class:`YoloError` naming the folder (a full
    disk, a file that cannot be written), never an ``OSError`` traceback."""

    def __init__(self, out: Path) -> None:
        self.out, self.records, self.images = out, [], 0
        self._lines = None
        with self.writing():
            self._lines = open(out / "detections.jsonl", "w", encoding="utf-8")  # noqa: SIM115

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an ``OSError`` while writing outputs into a :class:`YoloError`."""
        try:
            yield
        except OSError as exc:
            self.close()
            done = (f"; the {self.images} images done before are in {self.out}/detections.jsonl"
                    if self.images else "")
            reason = exc.strerror or str(exc)
            hint = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "make it writable")
            raise YoloError(f"{self.out}: cannot write the detection results there ({reason}"
                            f"{': ' + str(exc.filename) if exc.filename else ''}); {hint} or "
                            f"choose another --out{done}") from None

    def save_picture(self, picture: Image.Image, path: Path) -> None:
        """Write an annotated picture; a part-written one (full disk, Ctrl-C) is removed."""
        with self.writing():
            try:
                picture.save(path)
            except BaseException:
                path.unlink(missing_ok=True)
                raise

    def add(self, records: list[dict]) -> None:
        """The records of one more image: on disk (flushed) before this returns."""
        with self.writing():
            self._lines.write("".join(json.dumps(r) + "\n" for r in records))
            self._lines.flush()
        self.records += records
        self.images += 1

    def finish(self) -> Path:
        """Close the JSON Lines file and write every record to ``detections.json``."""
        path = self.out / "detections.json"
        with self.writing():
            self._lines.close()
            with atomic_write(path) as f:
                f.write(json.dumps(self.records, indent=1).encode())
        return path

    def close(self) -> None:
        """Close the JSON Lines file, keeping what reached the disk (an error closing it, such
        as a full disk refusing the last buffered bytes, leaves those out)."""
        if self._lines is not None:
            with suppress(OSError):
                self._lines.close()


def run(args: argparse.Namespace) -> int:
    check_img_size(args.img_size)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # ONNX Runtime's sessions take the same count
    files, earlier = collect_images(args.paths, Path(args.out))
    if earlier:
        print(f"left out {earlier} files under --out {args.out} (earlier results)")
    device = device_from_args(args)
    model, names = model_from_args(args)
    detector = make_detector(model, args.backend, args.img_size, args.conf, args.iou,
                             multi_label=not args.single_label, device=device,
                             precision=args.precision)
    out = writable_dir(args.out)
    batches = letterboxed_batches(ImageFiles(files), detector.input_hw, args.batch_size,
                                  args.workers, keep_images=True)
    results = DetectionFiles(out)
    failed, used = 0, set()
    try:
        with tqdm(total=len(files), unit="img", desc="detect") as bar:
            for batch in batches:
                for _, message in batch.failures:
                    failed += 1
                    bar.write(f"skipped: {message}", file=sys.stderr)
                if batch.indices:
                    dets_of = detector.detect_batch(batch.inputs, batch.letterboxes)
                    for i, image, dets in zip(batch.indices, batch.images, dets_of, strict=True):
                        path, name = files[i], _output_name(files[i], used)
                        results.save_picture(draw_detections(image, dets, names), out / name)
                        records = _records(path, dets, names)
                        results.add(records)
                        found = ", ".join(f"{r['category_name']} {r['score']:.2f}"
                                          for r in records)
                        bar.write(f"{path}: {found or 'nothing found'} -> {out / name}")
                bar.update(len(batch.indices) + len(batch.failures))
        written = results.finish()
    except KeyboardInterrupt:
        written = results.finish()
        print(f"yolov3 detect: interrupted after {results.images} of {len(files)} images; "
              f"their {len(results.records)} detections are in {out}/detections.jsonl and "
              f"{written.name}", file=sys.stderr)
        return 130
    finally:
        results.close()
    print(f"{results.images} images, {len(results.records)} detections written to {written} "
          "and detections.jsonl"
          + (f"; {failed} unreadable images skipped" if failed else ""))
    return 1 if failed and not results.images else 0


def _records(path: Path, dets: Detections, names: list[str]) -> list[dict]:
    """The records of an image's detections, as detections.json holds them: COCO-style
    ``bbox`` (x, y, width, height in image pixels) with the file, class and score."""
    records = []
    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                 dets.labels.tolist(), strict=True):
        x1, y1, x2, y2 = box
        records.append({
            "file_name": str(path), "category_id": label, "category_name": names[label],
            "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            "score": round(score, 5),
        })
    return records
