"""Images per second of the training data loader (darknet's augmentation, collate) at a fixed
input size, with 0 and N worker processes, on the demo dataset and, when it is there, the
kangaroo VOC folder; and, in one process, the milliseconds per image spent reading (decoding or
drawing) and augmenting.

    .venv/bin/python benchmarks/dataloader.py [--size 416] [--batch 8] [--batches 30]
        [--workers 0 2] [--kangaroo ../shared/datasets/kangaroo]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.errors import DataError
from yolov3.inputs.augment import TrainTransform
from yolov3.inputs.loader import MultiScale, make_train_loader

KANGAROO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "kangaroo"


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
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--kangaroo", type=Path, default=KANGAROO)
    args = parser.parse_args()

    datasets: dict[str, Dataset] = {"demo shapes 256x256": SyntheticShapes("train", 1000)}
    if args.kangaroo.is_dir():
        datasets["kangaroo VOC (JPEG decode)"] = open_dataset(args.kangaroo, "all")
    print(f"training loader, input {args.size}, batch {args.batch}, {args.batches} batches")
    for name, data in datasets.items():
        rates = {w: images_per_second(data, args.size, args.batch, args.batches, w)
                 for w in args.workers}
        base = rates[args.workers[0]]
        cells = ", ".join(f"{w} workers {r:6.1f} img/s ({r / base:.2f}x)" for w, r in rates.items())
        read, augment = stage_ms(data, args.size, args.batch * args.batches // 2)
        print(f"  {name:28s} {cells}; per image: read {read:.1f} ms, augment {augment:.1f} ms")


if __name__ == "__main__":
    main()
