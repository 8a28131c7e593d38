"""One training iteration: darknet's gradient accumulation over subdivisions, then one SGD step.

How the network runs (DistributedDataParallel across processes, torch.compile, autocast in
bfloat16 or float16, channels-last inputs) is decided once, when the :class:`TrainStep` is
built, and folded into its forward callable: the iteration itself never branches on them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from yolov3.loss import PARTS, yolo_loss
from yolov3.model.network import YOLOv3
from yolov3.train.config import AMP_DTYPES

Minibatch = tuple[Tensor, list[Tensor]]


class TrainStep:
    """Darknet's iteration on ``model`` with ``optimizer`` (see :mod:`yolov3.train.optim`).

    ``amp`` (``off``, ``bf16``, ``fp16``) runs the forward pass under autocast, the loss in
    float32, with a gradient scaler for fp16. ``channels_last`` feeds the images in that memory
    format, ``compile`` runs the network through ``torch.compile``. With ``world_size`` > 1 the
    network is wrapped in DistributedDataParallel (``device_ids`` as DDP takes them): each
    process sees a share of every minibatch and DDP averages the gradients, so each loss is
    multiplied by ``world_size`` to keep darknet's sum.
    """

    def __init__(
        self,
        model: YOLOv3,
        optimizer: Optimizer,
        *,
        amp: str = "off",
        channels_last: bool = False,
        compile: bool = False,
        world_size: int = 1,
        device_ids: list[int] | None = None,
    ) -> None:
        self.model, self.optimizer, self.world_size = model, optimizer, world_size
        device = next(model.parameters()).device
        net: torch.nn.Module = model
        self._no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
        if world_size > 1:
            net = DistributedDataParallel(model, device_ids=device_ids)
            self._no_sync = net.no_sync
        if compile:
            net = torch.compile(net)
        dtype = getattr(torch, AMP_DTYPES[amp]) if AMP_DTYPES[amp] else None
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        def forward(images: Tensor) -> list[Tensor]:
            with torch.autocast(device.type, dtype, enabled=dtype is not None):
                raw = net(images.contiguous(memory_format=memory_format))
            return [r.float() for r in raw]

        self.forward = forward
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def __call__(self, minibatches: Sequence[Minibatch], lr: float) -> dict[str, float]:
        """One iteration at learning rate ``lr``: a forward and backward pass per minibatch
        (darknet's subdivisions) with the gradients summed, then one SGD step.

        Each minibatch is ``(images (B, 3, H, W) in [0, 1], targets)`` with one (n_i, 5)
        ``class, xc, yc, w, h`` tensor per image. Returns the loss parts and ``total`` summed
        over the minibatches (and over all processes), and ``lr``. A non-finite total skips
        the step on every process (the gradients are dropped) and is returned as such for the
        caller to act on.
        """
        self.optimizer.zero_grad(set_to_none=True)
        sums = torch.zeros(len(PARTS) + 1, dtype=torch.float64)
        for k, (images, targets) in enumerate(minibatches):
            last = k == len(minibatches) - 1
            with contextlib.nullcontext() if last else self._no_sync():
                raw = self.forward(images)
                total, parts = yolo_loss(self.model.yolo_layers, raw, targets,
                                         (images.shape[2], images.shape[3]))
                self.scaler.scale(total * self.world_size).backward()
            sums += torch.stack([*(parts[n].detach() for n in PARTS), total.detach()]).cpu()
        sums = _all_processes_sum(sums.to(next(self.model.parameters()).device)).cpu()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if math.isfinite(float(sums[-1])):
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return {**dict(zip((*PARTS, "total"), sums.tolist(), strict=True)), "lr": lr}


def _all_processes_sum(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
