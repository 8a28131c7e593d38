"""``yolov3 detect``: boxes on images and folders, as annotated pictures and JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
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
from yolov3.fileio import writable_dir
from yolov3.images import ImageFiles, list_images
from yolov3.inference.backends import BACKENDS, make_detector
from yolov3.inference.batching import letterboxed_batches
from yolov3.inference.draw import draw_detections


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images and folders",
        description="Detect objects in image files and folders (jpg, png, bmp, webp, ...). "
        "Writes an annotated copy of each image and DIR/detections.json.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    add_model_args(p)
    add_detection_args(p, conf=0.25)
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
                             multi_label=not args.single_label, device=device)
    out = writable_dir(args.out)
    batches = letterboxed_batches(ImageFiles(files), detector.input_hw, args.batch_size,
                                  args.workers, keep_images=True)
    records, failed, used, lines = [], [], set(), []
    with tqdm(total=len(files), unit="img", desc="detect") as bar:
        for batch in batches:
            failed += [message for _, message in batch.failures]
            if batch.indices:
                dets_of = detector.detect_batch(batch.inputs, batch.letterboxes)
                for i, image, dets in zip(batch.indices, batch.images, dets_of, strict=True):
                    path = files[i]
                    name = _output_name(path, used)
                    draw_detections(image, dets, names).save(out / name)
                    found = []
                    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                                 dets.labels.tolist(), strict=True):
                        x1, y1, x2, y2 = box
                        records.append({
                            "file_name": str(path), "category_id": label,
                            "category_name": names[label],
                            "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                            "score": round(score, 5),
                        })
                        found.append(f"{names[label]} {score:.2f}")
                    lines.append(f"{path}: {', '.join(found) or 'nothing found'} -> {out / name}")
            bar.update(len(batch.indices) + len(batch.failures))
    (out / "detections.json").write_text(json.dumps(records, indent=1))
    for line in lines:
        print(line)
    for message in failed:
        print(f"skipped: {message}", file=sys.stderr)
    print(f"{len(lines)} images, {len(records)} detections written to {out}/detections.json"
          + (f"; {len(failed)} unreadable images skipped" if failed else ""))
    return 1 if failed and not lines else 0
