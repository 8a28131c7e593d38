"""One training iteration: darknet's gradient accumulation over subdivisions, then one SGD step.

How the network runs (DistributedDataParallel across processes, torch.compile, autocast in
bfloat16 or float16, channels-last inputs) is decided once, when the :class:`TrainStep` is
built, and folded into its forward callable: the iteration itself never branches on them.

An iteration whose loss is not finite changes nothing: its step is skipped and the batch-norm
running statistics that its forward passes moved are put back. The step also keeps a copy of
the last sound state (:class:`SoundState`), which a diverged run goes back to.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from yolov3.loss import DARKNET_LOSS, LossOptions, yolo_loss
from yolov3.model.network import YOLOv3
from yolov3.train.ema import WeightsEMA

Minibatch = tuple[Tensor, list[Tensor]]

#: Mixed-precision modes of ``train.amp`` and the autocast dtype of each.
AMP_DTYPES = {"off": None, "bf16": "bfloat16", "fp16": "float16"}
#: ``train.amp`` values: a mode of :data:`AMP_DTYPES`, or ``auto`` (bf16 where the device has
#: native bfloat16, fp16 on other CUDA GPUs, off elsewhere: see :func:`amp_mode`).
AMP_MODES = (*AMP_DTYPES, "auto")


def amp_mode(amp: str, device: str) -> str:
    """The mixed-precision mode ``train.amp`` runs as on ``device``: ``auto`` is bf16 where
    bfloat16 is native (AVX512_BF16 or AMX on the CPU, CUDA), fp16 on a CUDA GPU without it,
    off elsewhere; any other value as it is."""
    if amp != "auto":
        return amp
    from yolov3.inference.precision import resolve_precision  # torch, only when needed

    return {"fp32": "off"}.get(chosen := resolve_precision("auto", device), chosen)

#: A loss per image more than this many times the lowest of the last :data:`RECENT` finite
#: ones comes from weights that are blowing up (the lr is too high): they are not kept as the
#: sound state, whose loss was within this factor. Ordinary training never climbs so far
#: back (multi-scale inputs change the loss by a few times, a hard batch by tens).
EXPLODED = 1000.0
RECENT = 100


def batchnorm_buffers(model: torch.nn.Module) -> list[Tensor]:
    """The running statistics of every batch norm of ``model`` (running mean and variance,
    batches tracked): what a forward pass in training mode changes besides the output."""
    return [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for b in m.buffers()]


class SoundState:
    """A copy of the training state of ``model`` and ``optimizer`` (the trainable parameters,
    the batch-norm statistics and the optimiser's per-parameter state, such as SGD's momentum)
    as it was before the last iteration whose loss showed it sound: finite, and not blown up
    (at most :data:`EXPLODED` times the lowest of the recent losses). A run whose loss turns
    non-finite goes back to it: the weights of the last finite state that a lower learning
    rate can continue from. With ``ema``, the moving average of the weights goes back with
    them (else it would keep what the blown-up steps added to it, and the detector that
    ``last.pt`` and ``best.pt`` hold is the average). The copy lives beside the tensors (on
    their device) and is refreshed in place."""

    def __init__(self, model: torch.nn.Module, optimizer: Optimizer,
                 ema: WeightsEMA | None = None) -> None:
        self.model, self.optimizer, self.ema = model, optimizer, ema
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.buffers = batchnorm_buffers(model)
        self._params: list[Tensor] | None = None
        self._buffers: list[Tensor] | None = None
        self._ema: list[Tensor] | None = None
        self._ema_updates = 0
        self._optim: dict[Tensor, dict[str, object]] = {}
        self._recent: deque[float] = deque(maxlen=RECENT)
        self.calls_since: int | None = None  # iterations since the copy (None: no copy yet)

    def sound(self, loss_per_image: float) -> bool:
        """Whether a finite loss shows sound weights (and remember it among the recent)."""
        ok = not self._recent or loss_per_image <= EXPLODED * min(self._recent)
        self._recent.append(loss_per_image)
        return ok

    def keep(self, buffers_before: Sequence[Tensor]) -> None:
        """Copy the current parameters and optimiser state, with ``buffers_before`` as the
        batch-norm statistics (those before this iteration's forward passes)."""
        with torch.no_grad():
            if self._params is None:
                self._params = [p.detach().clone() for p in self.params]
            else:
                for mine, p in zip(self._params, self.params, strict=True):
                    mine.copy_(p)
            self._buffers = list(buffers_before)
            if self.ema is not None:
                averages = self.ema.tensors()
                if self._ema is None:
                    self._ema = [t.clone() for t in averages]
                else:
                    for mine, t in zip(self._ema, averages, strict=True):
                        mine.copy_(t)
                self._ema_updates = self.ema.updates
            for p in self.params:
                state = self.optimizer.state.get(p)
                if not state:
                    self._optim.pop(p, None)
                    continue
                mine = self._optim.setdefault(p, {})
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        held = mine.get(key)
                        if isinstance(held, Tensor) and held.shape == value.shape:
                            held.copy_(value)
                        else:
                            mine[key] = value.detach().clone()
                    else:
                        mine[key] = value
        self.calls_since = 0

    def restore(self) -> bool:
        """Put the copy back into the model and the optimiser; False when there is none (no
        step was applied since the start, so the state is still the one it started from)."""
        if self._params is None or self._buffers is None:
            return False
        with torch.no_grad():
            for p, mine in zip(self.params, self._params, strict=True):
                p.copy_(mine)
            for b, mine in zip(self.buffers, self._buffers, strict=True):
                b.copy_(mine)
            if self.ema is not None and self._ema is not None:
                for t, mine in zip(self.ema.tensors(), self._ema, strict=True):
                    t.copy_(mine)
                self.ema.updates = self._ema_updates
            for p in self.params:
                kept = self._optim.get(p)
                if kept is None:
                    self.optimizer.state.pop(p, None)
                    continue
                state = self.optimizer.state[p]
                for key, value in kept.items():
                    if isinstance(value, Tensor) and isinstance(state.get(key), Tensor):
                        state[key].copy_(value)
                    else:
                        state[key] = value.clone() if isinstance(value, Tensor) else value
        return True


class TrainStep:
    """Darknet's iteration on ``model`` with ``optimizer`` (see :mod:`yolov3.train.optim`).

    ``amp`` (``off``, ``bf16``, ``fp16``) runs the forward pass under autocast, the loss in
    float32, with a gradient scaler for fp16. ``channels_last`` feeds the images in that memory
    format, ``compile`` runs the network through ``torch.compile``. With ``world_size`` > 1 the
    network is wrapped in DistributedDataParallel (``device_ids`` as DDP takes them): each
    process sees a share of every minibatch and DDP averages the gradients, so each loss is
    multiplied by ``world_size`` to keep darknet's sum.

    ``loss`` says how the loss is made (darknet's by default); ``ema``, when given, is updated
    after every step whose loss was sound (not after the steps of a blowing-up run, so that
    the average does not take in their weights).
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
        loss: LossOptions = DARKNET_LOSS,
        ema: WeightsEMA | None = None,
    ) -> None:
        self.model, self.optimizer, self.world_size = model, optimizer, world_size
        self.loss, self.ema = loss, ema
        self.parts = loss.parts
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
        self.sound_state = SoundState(model, optimizer, ema)
        self.buffers = self.sound_state.buffers

    def __call__(self, minibatches: Sequence[Minibatch], lr: float) -> dict[str, float]:
        """One iteration at learning rate ``lr``: a forward and backward pass per minibatch
        (darknet's subdivisions) with the gradients summed, then one SGD step.

        Each minibatch is ``(images (B, 3, H, W) in [0, 1], targets)`` with one (n_i, 5)
        ``class, xc, yc, w, h`` tensor per image. Returns the loss parts and ``total`` summed
        over the minibatches (and over all processes), and ``lr``. A non-finite total skips
        the step on every process (the gradients are dropped, the batch-norm statistics put
        back as they were before the iteration) and is returned as such for the caller to act
        on; a sound one first refreshes :attr:`sound_state`.
        """
        self.optimizer.zero_grad(set_to_none=True)
        # The forward passes in training mode move the batch-norm statistics even when the
        # step is then skipped: keep them as they are (buffers only: cheap).
        buffers_before = [b.detach().clone() for b in self.buffers]
        count = 0
        sums = torch.zeros(len(self.parts) + 1, dtype=torch.float64)
        for k, (images, targets) in enumerate(minibatches):
            last = k == len(minibatches) - 1
            with contextlib.nullcontext() if last else self._no_sync():
                raw = self.forward(images)
                total, parts = yolo_loss(self.model.yolo_layers, raw, targets,
                                         (images.shape[2], images.shape[3]), self.loss)
                self.scaler.scale(total * self.world_size).backward()
            sums += torch.stack([*(parts[n].detach() for n in self.parts),
                                 total.detach()]).cpu()
            count += images.shape[0]
        sums = _all_processes_sum(sums.to(next(self.model.parameters()).device)).cpu()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sound = self.sound_state
        if sound.calls_since is not None:
            sound.calls_since += 1
        loss = float(sums[-1])
        if math.isfinite(loss):
            ok = sound.sound(loss / max(count * self.world_size, 1))
            if ok:
                sound.keep(buffers_before)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if ok and self.ema is not None:
                self.ema.update()
        else:
            with torch.no_grad():
                for b, before in zip(self.buffers, buffers_before, strict=True):
                    b.copy_(before)
        self.optimizer.zero_grad(set_to_none=True)
        return {**dict(zip((*self.parts, "total"), sums.tolist(), strict=True)), "lr": lr}


def _all_processes_sum(values: Tensor) -> Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
