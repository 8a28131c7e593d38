"""The building blocks of darknet networks, one module per cfg layer type.

Each block maps directly to a darknet layer so that weights load in darknet's order:
``ConvBlock`` ([convolutional]: conv, optional batch norm, activation), ``ResidualAdd``
([shortcut]), ``Route`` ([route]: concatenation), ``Upsample``, ``MaxPool`` and ``YOLOLayer``
([yolo]: the detection head's decoding, by :mod:`yolov3.model.box_coder`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from yolov3.model.box_coder import BoxCoder

_ACTIVATIONS = {
    "leaky": lambda: nn.LeakyReLU(0.1),
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "mish": nn.Mish,
    "logistic": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    """Darknet activation by name (``leaky`` is LeakyReLU with slope 0.1)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]()


class ConvBlock(nn.Module):
    """Darknet [convolutional]: Conv2d, then BatchNorm2d when ``batch_normalize``, then the
    activation. Without batch norm the convolution has a bias (the YOLO head's 1x1 conv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        batch_norm: bool = True,
        activation: str = "leaky",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm
        )
        # darknet's batch norm epsilon is 1e-5 (and .000001 in some forks); momentum follows
        # darknet's rolling average of 0.01 per minibatch.
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.01) if batch_norm else None
        self.act = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class ResidualAdd(nn.Module):
    """Darknet [shortcut]: the residual connection, previous output plus an earlier one."""

    def __init__(self, source: int, activation: str = "linear") -> None:
        super().__init__()
        self.source = source
        self.act = make_activation(activation)

    def forward(self, x: Tensor, earlier: Tensor) -> Tensor:
        return self.act(x + earlier)


class Route(nn.Module):
    """Darknet [route]: the channel-wise concatenation of earlier layers' outputs."""

    def __init__(self, sources: list[int]) -> None:
        super().__init__()
        self.sources = sources

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)


class Upsample(nn.Module):
    """Darknet [upsample]: nearest-neighbour upsampling by an integer factor."""

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=float(self.scale), mode="nearest")


class MaxPool(nn.Module):
    """Darknet [maxpool]: darknet pads ``padding`` (default ``size - 1``) in total,
    ``padding // 2`` before and the rest after, and takes the max over the valid pixels only.
    With size 2 stride 1 (yolov3-tiny) that pads one column and row on the right and bottom, so
    the map keeps its size."""

    def __init__(self, size: int, stride: int, padding: int | None = None) -> None:
        super().__init__()
        pad = size - 1 if padding is None else padding
        self.pad = (pad // 2, pad - pad // 2)
        self.pool = nn.MaxPool2d(size, stride)
        # PyTorch's ceil mode lets the last window run off the map, over valid pixels only
        self.unpadded = nn.MaxPool2d(size, stride, ceil_mode=True)

    def unpadded_windows(self, hw: Sequence[int]) -> bool:
        """Whether, on a map of ``hw`` pixels, PyTorch's ceil-mode pool without padding takes
        darknet's padded windows: nothing padded before, and as many windows (a stride-2 pool
        does). Its windows then hold the same valid pixels in the same order: the same values
        and the same gradients."""
        size, stride = self.pool.kernel_size, self.pool.stride
        padded = [(n + sum(self.pad) - size) // stride + 1 for n in hw]
        ceil = [-(-(n - size) // stride) + 1 for n in hw]
        return self.pad[0] == 0 and size >= stride and ceil == padded

    def forward(self, x: Tensor) -> Tensor:
        before, after = self.pad
        if not (before or after):
            return self.pool(x)
        # No padding copy where ceil mode takes the same windows. An exported graph keeps
        # darknet's Pad: ONNX Runtime's int8 quantiser handles the ceil-mode pool otherwise
        # (it lost detections in tests/test_int8.py).
        if self.unpadded_windows(x.shape[2:]) and not torch.onnx.is_in_onnx_export():
            return self.unpadded(x)
        x = F.pad(x, (before, after, before, after), value=float("-inf"))
        return self.pool(x)


class YOLOLayer(nn.Module):
    """Darknet [yolo]: splits a head's output into per-anchor predictions and decodes them.

    The head convolution gives ``len(mask) * (5 + C)`` channels per cell: for each of this
    layer's anchors, ``tx, ty, tw, th, to`` and ``C`` class logits. ``anchors`` holds all of the
    cfg's anchors (pixels of the network input), since target assignment picks the best of all
    of them; ``mask`` selects this layer's.
    """

    anchors: Tensor

    def __init__(
        self,
        anchors: list[tuple[float, float]],
        mask: list[int],
        num_classes: int,
        ignore_thresh: float = 0.7,
    ) -> None:
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), False)
        self.mask = list(mask)
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh

    @property
    def num_anchors(self) -> int:
        return len(self.mask)

    @property
    def layer_anchors(self) -> Tensor:
        """(A, 2) widths and heights, in input pixels, of this layer's anchors."""
        return self.anchors[self.mask]

    def forward(self, x: Tensor) -> Tensor:
        """(B, A*(5+C), h, w) head output -> raw predictions (B, A, h, w, 5+C)."""
        b, _, h, w = x.shape
        return x.view(b, self.num_anchors, 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)

    def decode(self, raw: Tensor, input_hw: tuple[int, int]) -> Tensor:
        """Raw predictions (B, A, h, w, 5+C) -> (B, A, h, w, 5+C) of cx, cy, w, h in input
        pixels (:class:`~yolov3.model.box_coder.BoxCoder`), then sigmoid objectness and class
        probabilities (darknet's inference output)."""
        coder = BoxCoder.of(input_hw, (raw.shape[2], raw.shape[3]))
        anchors = self.layer_anchors.to(raw.dtype).view(1, -1, 1, 1, 2)
        boxes = coder.decode(raw[..., 0:4], anchors, coder.grid(raw.device, raw.dtype))
        return torch.cat([boxes, torch.sigmoid(raw[..., 4:])], dim=-1)
