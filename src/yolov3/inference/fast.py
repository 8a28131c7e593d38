"""An inference-only copy of a network, tuned for speed on the CPU.

Darknet's ``fuse_conv_batchnorm`` folds each batch norm into the convolution before it, so a
[convolutional] layer costs one convolution and one activation. On top of that the fast copy
has no autograd state, keeps activations in channels-last order (what oneDNN's convolutions run
best on), applies its activations in place, runs bf16 2x2 max pools on the CPU as elementwise
maxima (:class:`PairwiseMaxPool`), and can be traced and frozen by TorchScript (oneDNN weight
prepacking, conv + activation fusion). Its output is the plain model's, to float rounding.
(In-place activations and pools without a padding copy, now the model's own, took a quarter off
yolov3-tiny's fp32 forward at 416, batch 8, on the 2-core Zen 4.) (``torch.compile`` with
Inductor was measured too: a minute or more to compile yolov3, and no faster than ONNX Runtime,
see ``benchmarks/infer.py``.)
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from yolov3.inference.precision import DTYPES
from yolov3.model.layers import ConvBlock, MaxPool
from yolov3.model.network import Decoded, YOLOv3

log = logging.getLogger("yolov3")

Mode = Literal["eager", "trace"]
MODES: tuple[str, ...] = ("eager", "trace")


def fold_batch_norm(model: YOLOv3) -> YOLOv3:
    """A copy of ``model`` in eval mode whose batch norms are folded into their convolutions
    (darknet's ``fuse_conv_batchnorm``): ``conv' = gamma * conv / sqrt(var + eps)``, with the
    bias ``beta - gamma * mean / sqrt(var + eps)``. Parameters no longer require grad."""
    fused = copy.deepcopy(model).eval()
    for block in fused.modules():
        if isinstance(block, ConvBlock) and block.bn is not None:
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = None
    fused.requires_grad_(False)
    return fused


class PairwiseMaxPool(nn.Module):
    """Darknet's [maxpool] (:class:`~yolov3.model.layers.MaxPool`, ``pool``) for the fast copy:
    in bf16 on the CPU a 2x2 stride-2 pool of an even map whose windows are the unpadded ones
    (:meth:`~yolov3.model.layers.MaxPool.unpadded_windows`) runs as two elementwise maxima of
    strided views (:func:`_max_pool_2x2`), the same values faster; elsewhere the layer itself."""

    def __init__(self, pool: MaxPool) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        size, stride = self.pool.pool.kernel_size, self.pool.pool.stride
        even = x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
        fast = x.dtype == torch.bfloat16 and x.device.type == "cpu"
        if size == stride == 2 and even and fast and self.pool.unpadded_windows(x.shape[2:]):
            return _max_pool_2x2(x)
        return self.pool(x)


def _max_pool_2x2(x: Tensor) -> Tensor:
    """A 2x2, stride-2 max pool of an even map: the maximum of row pairs, then column pairs.
    PyTorch's channels-last bf16 max pool on the CPU is slow on few channels; this gives the
    same values 1.3-3x faster on the 2-core Zen 4 (16 channels at 416: 30 vs 9 ms for a batch
    of 8). In fp32 and fp16 it was slower on some maps."""
    rows = torch.maximum(x[:, :, 0::2], x[:, :, 1::2])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _streamlined(net: YOLOv3) -> YOLOv3:
    """``net`` (a folded copy) with :class:`PairwiseMaxPool` for its max pools and its
    activations in place (each overwrites the fresh output of its convolution or sum)."""
    for i, layer in enumerate(net.layers):
        if isinstance(layer, MaxPool):
            net.layers[i] = PairwiseMaxPool(layer)
    for module in net.modules():
        if isinstance(module, (nn.LeakyReLU, nn.ReLU)):
            module.inplace = True
    return net


class FastModel(nn.Module):
    """``model``'s decoded inference output (:class:`Decoded`: (B, N, 5+C) rows), from a folded,
    channels-last, autograd-free copy.

    ``mode`` picks how the copy runs: ``eager`` (no start-up cost) or ``trace`` (TorchScript
    trace + freeze, one trace per input shape, a few seconds each). ``precision`` is the number
    format of the weights and activations (``fp32``, ``bf16``, ``fp16``: see
    :mod:`yolov3.inference.precision`); the inputs are cast to it and the decoded output is
    float32. ``num_threads`` sets PyTorch's intra-op threads when given.
    """

    def __init__(
        self,
        model: YOLOv3,
        mode: Mode = "eager",
        channels_last: bool = True,
        num_threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode '{mode}' (known: {', '.join(MODES)})")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.net = Decoded(_streamlined(fold_batch_norm(model))).eval()
        self.mode = mode
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        self._traced: dict[tuple, torch.jit.ScriptModule] = {}
        self.to_precision(precision)

    def to_precision(self, precision: str) -> FastModel:
        """This copy in ``precision`` (``fp32``, ``bf16``, ``fp16``), in place."""
        self.dtype = DTYPES[precision]
        self.to(self.dtype)  # through _apply, which drops the traces of the old precision
        return self

    def _apply(self, fn, recurse=True):  # nn.Module.to, .cuda, .half... go through here
        self._traced.clear()  # traces hold the old device's weights
        return super()._apply(fn, recurse)

    def _runner(self, x: Tensor):
        if self.mode == "eager":
            return self.net
        key = (tuple(x.shape), x.dtype, x.device)
        if key not in self._traced:
            with warnings.catch_warnings():  # TorchScript's deprecation notice
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(self.net, x, check_trace=False)
                self._traced[key] = torch.jit.freeze(traced)
        return self._traced[key]

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode():
            return self._runner(x)(x)


def is_exact(fast: nn.Module, model: YOLOv3, input_hw: tuple[int, int] = (64, 64),
             tol: float = 1e-4) -> bool:
    """Whether ``fast`` gives ``model``'s decoded output to ``tol`` (relative or absolute, as
    ``torch.allclose``) on a fixed random batch of two ``input_hw`` images."""
    device = next(model.parameters()).device
    x = torch.rand((2, 3, *input_hw), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        return torch.allclose(fast(x), Decoded(model.eval())(x), rtol=tol, atol=tol)


def fast_if_exact(model: YOLOv3, mode: Mode = "eager", precision: str = "fp32") -> nn.Module:
    """:class:`FastModel` of ``model`` in ``precision`` when its fp32 copy passes
    :func:`is_exact` (the folding is right), else ``model`` decoded, in fp32."""
    fast = FastModel(model, mode).to(next(model.parameters()).device)
    if not is_exact(fast, model):
        log.warning("the fast inference path differs from the plain model by more than 1e-4; "
                    "using the plain model in fp32")
        return Decoded(model)
    return fast.to_precision(precision)
