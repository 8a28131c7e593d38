"""Training throughput: images per second of full training steps (data loading, forward,
darknet's loss, backward, SGD) and the share of each step spent waiting for data.

    .venv/bin/python benchmarks/train.py [--model yolov3-tiny] [--size 416] [--batch 8]
        [--workers 2] [--steps 10] [--data ../shared/datasets/kangaroo]

Without --data the generated demo dataset is used. The first step (worker start-up, allocator
warm-up) is not counted. The target of the training issue: under 10 % waiting with 2 workers.
"""

from __future__ import annotations

import argparse
import time

import torch

from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.inputs.loader import MultiScale, make_train_loader
from yolov3.model import build_model
from yolov3.train.config import load_config
from yolov3.train.optim import build_optimizer, learning_rate
from yolov3.train.step import TrainStep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov3-tiny")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--data", default=None, help="a dataset (default: the demo shapes)")
    args = parser.parse_args()

    data = SyntheticShapes("train") if args.data is None else open_dataset(args.data, "train")
    config = load_config(overrides=[f"optimizer.batch={args.batch}", "optimizer.subdivisions=1"])
    model = build_model(args.model, num_classes=len(data.names)).train()
    train_step = TrainStep(model, build_optimizer(model, config.optimizer))
    loader = make_train_loader(data, args.batch, multiscale=MultiScale(args.size, args.size),
                               workers=args.workers, max_iterations=args.steps + 1)
    waiting = computing = 0.0
    images = 0
    stream = iter(loader)
    for step in range(args.steps + 1):
        start = time.perf_counter()
        batch, targets, _ = next(stream)
        fetched = time.perf_counter()
        train_step([(batch, targets)], learning_rate(1000 + step, config))
        done = time.perf_counter()
        if step:  # the first step pays for worker start-up
            waiting += fetched - start
            computing += done - fetched
            images += len(batch)
    total = waiting + computing
    print(f"{args.model} at {args.size}, batch {args.batch}, {args.workers} workers, "
          f"{torch.get_num_threads()} torch threads, {args.steps} steps on {data!r}")
    print(f"images/s {images / total:.2f}  step {total / args.steps:.3f} s  "
          f"waiting for data {100 * waiting / total:.1f} %")


if __name__ == "__main__":
    main()
