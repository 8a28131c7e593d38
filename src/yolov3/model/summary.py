"""Darknet's layer table of a network, grouped by the parts of :mod:`yolov3.model.parts`.

Darknet prints one line per layer when it loads a cfg (``layer filters size input -> output``).
The table here has the same columns for every layer: its index, its cfg type, the filters and
``size x size / stride`` of a ``[convolutional]`` or ``[maxpool]`` (the factor of an
``[upsample]``), the layers a ``[route]`` or ``[shortcut]`` reads, the output map C x H x W at a
given input size, and the layer's trainable parameters (convolution weights, the bias of a
convolution without batch norm, batch norm's scale and shift; not its running statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from yolov3.model.layers import ConvBlock, MaxPool, ResidualAdd, Route, Upsample, YOLOLayer
from yolov3.model.network import YOLOv3
from yolov3.model.parts import BACKBONE, UPSAMPLING, NetworkParts

#: The short names darknet's own table prints for each cfg section type.
DARKNET_NAMES = {"convolutional": "conv", "maxpool": "max", "shortcut": "res", "route": "route",
                 "upsample": "upsample", "yolo": "yolo"}


@dataclass(frozen=True)
class LayerRow:
    """One line of the layer table."""

    index: int
    type: str  # the cfg section type: convolutional, maxpool, shortcut, route, upsample, yolo
    part: str  # backbone, upsampling network or head k
    filters: int | None  # of a [convolutional]
    size: str  # "3 x 3 / 2" for a convolution or max-pool, "2x" for an upsampling, else ""
    sources: tuple[int, ...]  # the layers a [route] joins or a [shortcut] adds
    output: tuple[int, int, int]  # C, H, W (a YOLO layer's is its input, as in darknet)
    params: int


@dataclass(frozen=True)
class LayerTable:
    """The layer table of a network at one input size, with its parts."""

    rows: tuple[LayerRow, ...]
    parts: NetworkParts
    input_hw: tuple[int, int]

    @property
    def conv_layers(self) -> int:
        return sum(r.type == "convolutional" for r in self.rows)

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    def totals(self) -> dict[str, tuple[int, int]]:
        """(convolutional layers, parameters) of the backbone, the upsampling network and of
        all the heads together (key ``heads``)."""
        out = {BACKBONE: (0, 0), UPSAMPLING: (0, 0), "heads": (0, 0)}
        for r in self.rows:
            key = r.part if r.part in (BACKBONE, UPSAMPLING) else "heads"
            convs, params = out[key]
            out[key] = (convs + (r.type == "convolutional"), params + r.params)
        return out


def _size_text(layer: nn.Module) -> str:
    if isinstance(layer, ConvBlock):
        (k, _), (s, _) = layer.conv.kernel_size, layer.conv.stride
        return f"{k} x {k} / {s}"
    if isinstance(layer, MaxPool):
        return f"{layer.pool.kernel_size} x {layer.pool.kernel_size} / {layer.pool.stride}"
    if isinstance(layer, Upsample):
        return f"{layer.scale}x"
    return ""


def _sources(layer: nn.Module) -> tuple[int, ...]:
    if isinstance(layer, Route):
        return tuple(layer.sources)
    if isinstance(layer, ResidualAdd):
        return (layer.source,)
    return ()


def output_shapes(model: YOLOv3, input_hw: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Each layer's output map (C, H, W) for an input of ``input_hw`` pixels, from one forward
    pass of a copy of the network on the meta device (shapes only: nothing is computed). A YOLO
    layer's entry is its input, the head convolution's map, as darknet reports it."""
    with torch.device("meta"):
        twin = YOLOv3(model.sections)
    shapes: dict[int, tuple[int, int, int]] = {}

    def record(i: int, layer: nn.Module) -> Callable[[nn.Module, tuple, Tensor], None]:
        def hook(_: nn.Module, inputs: tuple, output: Tensor) -> None:
            shape = inputs[0].shape if isinstance(layer, YOLOLayer) else output.shape
            shapes[i] = (shape[1], shape[2], shape[3])
        return hook

    handles = [layer.register_forward_hook(record(i, layer))
               for i, layer in enumerate(twin.layers)]
    try:
        with torch.no_grad():
            twin(torch.zeros(1, twin.info.channels, *input_hw, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return [shapes[i] for i in range(len(twin.layers))]


def layer_table(model: YOLOv3, input_hw: tuple[int, int]) -> LayerTable:
    """The layer table of ``model`` (any device, the meta device included) at ``input_hw``."""
    parts = model.parts
    shapes = output_shapes(model, input_hw)
    rows = tuple(
        LayerRow(
            index=i,
            type=sec.type,
            part=parts.part_of(i),
            filters=layer.conv.out_channels if isinstance(layer, ConvBlock) else None,
            size=_size_text(layer),
            sources=_sources(layer),
            output=shapes[i],
            params=sum(p.numel() for p in layer.parameters()),
        )
        for i, (sec, layer) in enumerate(zip(model.sections[1:], model.layers, strict=True))
    )
    return LayerTable(rows, parts, input_hw)


def _group_title(table: LayerTable, name: str, layers: range) -> str:
    span = f"layer {layers[0]}" if len(layers) == 1 else f"layers {layers[0]}-{layers[-1]}"
    if name.startswith("head "):
        k = int(name.split()[1])
        stride = table.parts.head_strides[k - 1]
        return f"{name}: YOLO layer, stride {stride:g} ({span})"
    return f"{name} ({span})"


def format_layer_table(table: LayerTable) -> str:
    """The table as text: darknet's columns, a title line before each part's stretch of layers,
    then the convolutional layers and parameters of each part and of the whole network."""
    lines = [f"{'layer':>5}  {'type':<14} {'filters':>7}  {'size/stride':<11}  "
             f"{'output C x H x W':>18}  {'parameters':>11}"]
    for name, layers in table.parts.groups():
        lines.append(_group_title(table, name, layers))
        for r in (table.rows[i] for i in layers):
            kind = " ".join([DARKNET_NAMES.get(r.type, r.type), *map(str, r.sources)])
            c, h, w = r.output
            filters = "" if r.filters is None else str(r.filters)
            params = f"{r.params:,}" if r.params else ""
            lines.append(f"{r.index:>5}  {kind:<14} {filters:>7}  {r.size:<11}  "
                         f"{c:>6} x {h:>4} x {w:>4}  {params:>11}".rstrip())
    heads = len(table.parts.heads)
    labels = {BACKBONE: BACKBONE, UPSAMPLING: UPSAMPLING,
              "heads": f"heads ({heads} YOLO layer{'s' if heads > 1 else ''})"}
    for key, (convs, params) in table.totals().items():
        lines.append(f"{labels[key]}: {convs} convolutional layers, {params:,} parameters")
    lines.append(f"total: {table.conv_layers} convolutional layers, {table.params:,} parameters")
    return "\n".join(lines)
