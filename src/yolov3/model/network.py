"""The YOLOv3 network, built from a darknet cfg.

One design serves every architecture: the built-in ``yolov3``, ``yolov3-spp`` and
``yolov3-tiny`` are the cfg files shipped in ``yolov3/cfgs``, and any cfg made of the supported
layer types builds the same way. ``forward`` returns the raw predictions of each YOLO layer in
either mode (what the loss takes); decoding them into darknet's inference output is the explicit
step :meth:`YOLOv3.decode`, which :class:`Decoded` appends to a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from yolov3.errors import ConfigError
from yolov3.model.cfg import (
    Section,
    layer_strides,
    load_cfg,
    override_head,
    parse_anchors,
    resolve_layer,
    with_input_size,
)
from yolov3.model.layers import (
    ConvBlock,
    MaxPool,
    ResidualAdd,
    Route,
    Upsample,
    YOLOLayer,
)
from yolov3.model.parts import NetworkParts, network_parts


@dataclass(frozen=True)
class NetInfo:
    """The [net] section's values that the model and the trainer use: ``width`` and ``height``
    are the input the network detects at (darknet's ``detector test``); training sets them to
    its evaluation input, so that a checkpoint and its ``model.cfg`` carry it."""

    width: int
    height: int
    channels: int


# The most parameters one convolution may hold: 64 M (yolov3's largest has 4.7 M), so that a typo
# such as filters=2555555 is an error instead of a machine out of memory.
MAX_CONV_PARAMETERS = 1 << 26


def _build_layer(
    sec: Section, i: int, in_ch: int, out_channels: list[int]
) -> tuple[nn.Module, int]:
    """One module for section ``sec`` (layer ``i``) and its number of output channels."""
    if sec.type == "convolutional":
        size = sec.get_int("size", 1, minimum=1)
        # darknet reads padding, then `if(pad) padding = size/2;`: pad wins
        padding = sec.get_int("padding", 0, minimum=0)
        if sec.get_int("pad", 0):
            padding = size // 2
        filters = sec.get_int("filters", minimum=1)
        if filters * in_ch * size * size > MAX_CONV_PARAMETERS:
            raise ConfigError(
                f"{sec.where()}: {filters} filters of {size}x{size}x{in_ch} make "
                f"{filters * in_ch * size * size:,} weights, more than the "
                f"{MAX_CONV_PARAMETERS:,} a layer may have; check filters and size"
            )
        try:
            layer = ConvBlock(
                in_ch, filters, size, sec.get_int("stride", 1, minimum=1), padding,
                batch_norm=bool(sec.get_int("batch_normalize", 0)),
                activation=sec.get_str("activation", "logistic"),
            )
        except ValueError as exc:
            raise ConfigError(f"{sec.where('activation')}: {exc}") from None
        return layer, filters
    if sec.type == "shortcut":
        src = resolve_layer(sec.get_int("from"), i, sec, "from")
        if out_channels[src] != in_ch:
            raise ConfigError(
                f"{sec.where('from')}: adds layer {src} ({out_channels[src]} channels) to "
                f"layer {i - 1} ({in_ch} channels); the channel counts must match"
            )
        try:
            return ResidualAdd(src, sec.get_str("activation", "linear")), in_ch
        except ValueError as exc:
            raise ConfigError(f"{sec.where('activation')}: {exc}") from None
    if sec.type == "route":
        srcs = [resolve_layer(v, i, sec, "layers") for v in sec.get_ints("layers")]
        return Route(srcs), sum(out_channels[s] for s in srcs)
    if sec.type == "upsample":
        return Upsample(sec.get_int("stride", 2, minimum=1)), in_ch
    if sec.type == "maxpool":
        stride = sec.get_int("stride", 1, minimum=1)  # darknet: stride first, size = stride
        size = sec.get_int("size", stride, minimum=1)
        return MaxPool(size, stride, sec.get_int("padding", size - 1, minimum=0)), in_ch
    if sec.type == "yolo":
        anchors = parse_anchors(sec.get_str("anchors"), sec.where("anchors"))
        mask = sec.get_ints("mask", list(range(len(anchors))))
        if any(not 0 <= m < len(anchors) for m in mask):
            raise ConfigError(f"{sec.where('mask')}: indices must be in 0..{len(anchors) - 1}")
        classes = sec.get_int("classes", minimum=1)
        expected = len(mask) * (5 + classes)
        if in_ch != expected:
            raise ConfigError(
                f"{sec.where()}: the preceding convolution has {in_ch} filters; "
                f"len(mask) * (5 + classes) = {expected} are needed"
            )
        return YOLOLayer(anchors, mask, classes, sec.get_float("ignore_thresh", 0.7)), in_ch
    raise ConfigError(f"{sec.where()}: unsupported layer type")  # parse_cfg rejects these


class YOLOv3(nn.Module):
    """A darknet network from cfg sections: ``layers[i]`` is the cfg's layer ``i``."""

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        net = sections[0]
        self.sections = sections
        self.info = NetInfo(net.get_int("width", 416, minimum=1),
                            net.get_int("height", 416, minimum=1),
                            net.get_int("channels", 3, minimum=1))
        self.layers = nn.ModuleList()
        out_channels: list[int] = []
        in_ch = self.info.channels
        for i, sec in enumerate(sections[1:]):
            layer, in_ch = _build_layer(sec, i, in_ch, out_channels)
            self.layers.append(layer)
            out_channels.append(in_ch)
        strides = layer_strides(sections)
        for sec, layer in zip(sections[1:], self.layers, strict=True):
            if isinstance(layer, Route) and len({strides[s] for s in layer.sources}) > 1:
                steps = ", ".join(f"{s}: {strides[s]:g}" for s in layer.sources)
                raise ConfigError(f"{sec.where('layers')}: joins maps of different sizes "
                                  f"(layer: stride {steps}); check the strides before it")
        self.yolo_layers = [m for m in self.layers if isinstance(m, YOLOLayer)]
        if not self.yolo_layers:
            raise ConfigError(f"{net.source}: the cfg has no [yolo] layer")
        if len({m.num_classes for m in self.yolo_layers}) != 1:
            raise ConfigError(f"{net.source}: all [yolo] layers must have the same classes")
        # Outputs that a later route or shortcut reads; all others are dropped in forward.
        self._kept = {s for m in self.layers if isinstance(m, Route) for s in m.sources}
        self._kept |= {m.source for m in self.layers if isinstance(m, ResidualAdd)}
        # Darknet's weights-file header, kept so that a loaded file saves back identically.
        self.header_version: tuple[int, int, int] = (0, 2, 0)
        self.seen = 0
        self.frozen = 0
        self.frozen_bn = False

    def freeze(self, num_layers: int) -> None:
        """Train only the layers from ``num_layers`` on (darknet's ``stopbackward``): the first
        ``num_layers`` get no gradient and their batch norms keep their statistics."""
        if not 0 <= num_layers <= len(self.layers):
            raise ConfigError(f"cannot freeze {num_layers} layers of a {len(self.layers)}-layer "
                              "network")
        self.frozen = num_layers
        for i, layer in enumerate(self.layers):
            layer.requires_grad_(i >= num_layers)
        self.train(self.training)

    def freeze_bn(self, frozen: bool = True) -> None:
        """Keep every batch norm's running mean and variance as loaded and normalise with them
        in training too (torchvision's ``FrozenBatchNorm2d`` for fine-tuning); their scales and
        shifts still learn. Darknet updates the statistics (``frozen`` False)."""
        self.frozen_bn = frozen
        self.train(self.training)

    def train(self, mode: bool = True) -> YOLOv3:
        super().train(mode)
        for layer in self.layers[: self.frozen]:
            layer.eval()
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def num_classes(self) -> int:
        return self.yolo_layers[0].num_classes

    @property
    def anchors(self) -> Tensor:
        """(K, 2) all anchors of the cfg, in input pixels."""
        return self.yolo_layers[0].anchors

    @property
    def parts(self) -> NetworkParts:
        """Which layers are the backbone, the upsampling network and each head (the 1x1
        convolution and YOLO layer), derived from the cfg (see :mod:`yolov3.model.parts`)."""
        return network_parts(self.sections)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Raw predictions of each YOLO layer, in cfg order: (B, A, h, w, 5+C) logits, in
        training and eval mode alike (what the loss takes; :meth:`decode` turns them into
        detections)."""
        saved: dict[int, Tensor] = {}
        raw: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Route):
                x = layer([saved[s] for s in layer.sources])
            elif isinstance(layer, ResidualAdd):
                x = layer(x, saved[layer.source])
            elif isinstance(layer, YOLOLayer):
                raw.append(layer(x))
            else:
                x = layer(x)
            if i in self._kept:
                saved[i] = x
        return raw

    def decode(self, raw: Sequence[Tensor], input_hw: tuple[int, int]) -> Tensor:
        """Darknet's inference output from raw predictions: (B, N, 5+C) rows of cx, cy, w, h
        (input pixels), objectness and class probabilities, ordered by layer, anchor, y, x.
        Decoded in float32 whatever the precision of ``raw``."""
        out = [m.decode(r.float(), input_hw).flatten(1, 3)
               for m, r in zip(self.yolo_layers, raw, strict=True)]
        return torch.cat(out, dim=1)


class Decoded(nn.Module):
    """A network followed by its decoding: images (B, 3, H, W) in, darknet's inference output
    (B, N, 5+C) out (:meth:`YOLOv3.decode`). What the detector, the export and the evaluation
    run; ``net`` may be a batch-norm-folded or lower-precision copy of a :class:`YOLOv3`."""

    def __init__(self, net: YOLOv3) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net.decode(self.net(images), (images.shape[2], images.shape[3]))


def build_model(
    cfg: str | Path | list[Section],
    num_classes: int | None = None,
    anchors: list[tuple[float, float]] | None = None,
    input_hw: tuple[int, int] | None = None,
    ignore_thresh: float | None = None,
) -> YOLOv3:
    """Build a network from a built-in name (``yolov3``, ``yolov3-spp``, ``yolov3-tiny``), a cfg
    path or parsed sections, optionally with another class count, anchor set or ``[yolo]``
    ignore threshold, and another ``[net]`` input size ``input_hw`` (height, width;
    :attr:`YOLOv3.info`)."""
    sections = cfg if isinstance(cfg, list) else load_cfg(cfg)
    if num_classes is not None or anchors is not None or ignore_thresh is not None:
        sections = override_head(sections, num_classes, anchors, ignore_thresh)
    if input_hw is not None:
        sections = with_input_size(sections, input_hw)
    return YOLOv3(sections)
