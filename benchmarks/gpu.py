"""The GPU figures of the README's performance table, in one short run on one CUDA device.

    python benchmarks/gpu.py [--model yolov3] [--size 416] [--batch 16] [--steps 20]

For yolov3 at 416: training images/s with fp32, bf16 autocast and channels_last (batch 16,
data held in GPU memory so that the loader is not measured), peak memory of each; inference
images/s at batch 1 and 32; and the bf16 loss after ``--steps`` steps from the same start as a
ratio of the fp32 loss (the issue asks for it within 1 %).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from yolov3.inference.fast import fold_batch_norm
from yolov3.model import build_model
from yolov3.train.config import load_config
from yolov3.train.optim import build_optimizer, learning_rate
from yolov3.train.step import TrainStep


def fake_batch(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, list]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g).to(device)
    targets = []
    for _ in range(n):
        k = 8
        xy = torch.rand(k, 2, generator=g) * 0.8 + 0.1
        wh = torch.rand(k, 2, generator=g) * 0.3 + 0.02
        cls = torch.randint(0, 80, (k, 1), generator=g).float()
        targets.append(torch.cat([cls, xy, wh], 1).to(device))
    return images, targets


def train_rate(model, options: dict, batch, steps: int) -> tuple[float, float, float]:
    """(images/s, peak GiB, final loss) of ``steps`` training steps on one fixed batch."""
    config = load_config(overrides=[f"optimizer.batch={len(batch[0])}",
                                    "optimizer.subdivisions=1"])
    step = TrainStep(model, build_optimizer(model, config.optimizer), **options)
    torch.cuda.reset_peak_memory_stats()
    loss = 0.0
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            start = time.perf_counter()
        loss = step([batch], learning_rate(1000 + i, config))["total"]
    torch.cuda.synchronize()
    rate = steps * len(batch[0]) / (time.perf_counter() - start)
    return rate, torch.cuda.max_memory_allocated() / 2**30, loss


@torch.inference_mode()
def infer_rate(model, n: int, size: int, device: torch.device, repeats: int = 20) -> float:
    x = torch.rand(n, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        model(x)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    torch.cuda.synchronize()
    return repeats * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov3")
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    torch.manual_seed(0)
    start = build_model(args.model).to(device).train()
    batch = fake_batch(args.batch, args.size, device)
    results = {}
    for name, options, nhwc in [("fp32", {}, False),
                                ("bf16", {"amp": "bf16"}, False),
                                ("bf16+channels_last",
                                 {"amp": "bf16", "channels_last": True}, True)]:
        model = copy.deepcopy(start)
        if nhwc:
            model = model.to(memory_format=torch.channels_last)
        rate, peak, loss = train_rate(model, options, batch, args.steps)
        results[name] = loss
        print(f"train {name:>20}: {rate:7.1f} img/s  peak {peak:5.2f} GiB  loss after "
              f"{args.steps} steps {loss:.2f}")
    print(f"bf16 / fp32 loss after {args.steps} steps: {results['bf16'] / results['fp32']:.4f}")
    fast = fold_batch_norm(copy.deepcopy(start).eval()).to(memory_format=torch.channels_last)
    for n in (1, 32):
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cuda", dtype, enabled=dtype != torch.float32):
                rate = infer_rate(fast, n, args.size, device)
            print(f"infer batch {n:>2} {dtype!s:>14}: {rate:8.1f} img/s")


if __name__ == "__main__":
    main()
