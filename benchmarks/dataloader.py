"""Images per second of the training data loader (darknet's augmentation, collate) at each
input size, with 0, 1, ... worker processes, on the demo dataset and, when they are there, the
kangaroo VOC folder and the coco128 photos; per worker and per core, beside the milliseconds per
image spent reading (decoding or drawing) and augmenting in one process; and the cores that a
GPU training at ``--gpu-rate`` images/s needs (what ``train.workers: auto`` is sized by).

    .venv/bin/python benchmarks/dataloader.py [--sizes 416 608] [--batch 8] [--batches 30]
        [--workers 0 1] [--gpu-rate 1000] [--kangaroo ../shared/datasets/kangaroo]
        [--coco ../shared/datasets/coco128-train]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.devices import describe_device
from yolov3.errors import DataError
from yolov3.inputs.augment import TrainTransform
from yolov3.inputs.loader import MultiScale, make_train_loader

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
KANGAROO = SHARED / "kangaroo"
COCO128 = SHARED / "coco128-train"


def images_per_second(data: Dataset, size: int, batch: int, batches: int, workers: int) -> float:
    """Loader throughput after the first batch (worker start-up excluded)."""
    loader = make_train_loader(data, batch, multiscale=MultiScale(size, size), workers=workers,
                               max_iterations=batches + 1)
    stream = iter(loader)
    next(stream)
    start = time.perf_counter()
    count = sum(len(images) for images, _, _ in stream)
    rate = count / (time.perf_counter() - start)
    if loader.skipped:
        print(f"    ({len(loader.skipped)} unreadable image reads replaced: {loader.skipped[0]})")
    return rate


def stage_ms(data: Dataset, size: int, count: int) -> tuple[float, float]:
    """Milliseconds per image to read ``data[i]`` and to augment it, in this process
    (unreadable images skipped)."""
    samples = []
    start = time.perf_counter()
    for i in range(count):
        try:
            samples.append(data[i % len(data)])
        except DataError:
            continue
    read = time.perf_counter() - start
    count = len(samples)
    transform, rng = TrainTransform(), np.random.default_rng(0)
    start = time.perf_counter()
    for sample in samples:
        transform(sample, (size, size), rng)
    return read / count * 1e3, (time.perf_counter() - start) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[416, 608])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--gpu-rate", type=float, default=1000.0,
                        help="images/s a GPU trains at, to size the loader for")
    parser.add_argument("--kangaroo", type=Path, default=KANGAROO)
    parser.add_argument("--coco", type=Path, default=COCO128)
    args = parser.parse_args()

    datasets: dict[str, Dataset] = {"demo shapes 256x256": SyntheticShapes("train", 1000)}
    if args.kangaroo.is_dir():
        datasets["kangaroo VOC (JPEG decode)"] = open_dataset(args.kangaroo, "all")
    if (args.coco / "data.yaml").is_file():
        datasets["coco128 photos (JPEG decode)"] = open_dataset(args.coco / "data.yaml", "train")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"training loader on {describe_device(torch.device('cpu'))}, {cores} usable; "
          f"batch {args.batch}, {args.batches} batches; 0 workers = loading in the main process")
    for size in args.sizes:
        print(f"input {size}:")
        for name, data in datasets.items():
            rates = {w: images_per_second(data, size, args.batch, args.batches, w)
                     for w in args.workers}
            base = rates[args.workers[0]]
            cells = ", ".join(f"{w} workers {r:6.1f} img/s ({r / base:.2f}x, "
                              f"{r / max(w, 1):.1f} per worker)" for w, r in rates.items())
            read, augment = stage_ms(data, size, args.batch * args.batches // 2)
            per_core = 1e3 / (read + augment)
            print(f"  {name:30s} {cells}")
            print(f"  {'':30s} one core: read {read:.1f} ms + augment {augment:.1f} ms an image "
                  f"= {per_core:.0f} img/s; {args.gpu_rate:.0f} img/s needs "
                  f"{math.ceil(args.gpu_rate / per_core)} loader cores")


if __name__ == "__main__":
    main()
