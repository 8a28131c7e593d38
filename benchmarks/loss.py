"""Cost of target assignment + loss against the network's forward + backward pass.

    python benchmarks/loss.py [--model yolov3-tiny yolov3] [--batch 8] [--img-size 416]
                              [--gts 20] [--repeats 5] [--threads N]

For each model, on random images and ``--gts`` random ground truths per image, prints the median
time of (a) assignment + loss (forward and backward to the raw outputs, the part this project
adds to a training step) and (b) the network's forward + backward, and the ratio a / b. The
target is a ratio under 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from yolov3 import build_model
from yolov3.loss import yolo_loss


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocator, kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_targets(batch: int, count: int, num_classes: int, seed: int) -> list[torch.Tensor]:
    """``count`` boxes per image: random class, centre, and sides of 2 % to 60 % of the input."""
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randint(num_classes, (batch, count, 1), generator=gen).float()
    centre = torch.rand(batch, count, 2, generator=gen)
    size = 0.02 + 0.58 * torch.rand(batch, count, 2, generator=gen)
    return list(torch.cat([cls, centre, size], dim=2))


def bench(name: str, batch: int, size: int, gts: int, repeats: int, net_repeats: int) -> None:
    model = build_model(name).train()
    images = torch.rand(batch, 3, size, size)
    targets = random_targets(batch, gts, model.num_classes, seed=0)
    input_hw = (size, size)
    with torch.no_grad():
        raw = [r.detach() for r in model(images)]

    def loss_step() -> None:
        leaves = [r.clone().requires_grad_(True) for r in raw]
        total, _ = yolo_loss(model.yolo_layers, leaves, targets, input_hw)
        total.backward()

    def loss_forward() -> None:
        with torch.no_grad():
            yolo_loss(model.yolo_layers, raw, targets, input_hw)

    grads = [torch.randn_like(r) for r in raw]

    def network_step() -> None:
        model.zero_grad(set_to_none=True)
        torch.autograd.backward(model(images), grads)

    t_loss = median_seconds(loss_step, repeats)
    t_loss_fwd = median_seconds(loss_forward, repeats)
    t_net = median_seconds(network_step, net_repeats)
    print(
        f"{name}: batch {batch} at {size}, {gts} GTs/image, {torch.get_num_threads()} threads\n"
        f"  assignment + loss, forward only       {t_loss_fwd * 1e3:9.1f} ms\n"
        f"  assignment + loss, forward + backward {t_loss * 1e3:9.1f} ms\n"
        f"  network forward + backward            {t_net * 1e3:9.1f} ms\n"
        f"  ratio={t_loss / t_net:.4f} (target < 0.05)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["yolov3-tiny", "yolov3"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--img-size", type=int, default=416)
    parser.add_argument("--gts", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the loss")
    parser.add_argument("--net-repeats", type=int, default=1,
                        help="timed runs of the network (after one warm-up run)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.model:
        bench(name, args.batch, args.img_size, args.gts, args.repeats, args.net_repeats)


if __name__ == "__main__":
    main()
