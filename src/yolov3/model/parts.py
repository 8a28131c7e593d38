"""The parts of a YOLOv3 network, by the names of Part 1 of the blog series.

The blog splits YOLOv3 into the **backbone** (Darknet-53, the feature extractor), the
**upsampling network** (the neck: the convolution sets that follow the backbone, the upsampling
layers and the routes that join coarse maps with the backbone's finer ones) and the **YOLO
layers**. A darknet cfg only lists layers, so the parts are derived from it; layer ``i`` is
``sections[i + 1]`` (``sections[0]`` is ``[net]``), as in darknet. The rule:

* **head k** (k = 1, 2, ... for each ``[yolo]`` in cfg order): the ``[yolo]`` layer (the YOLO
  layer) together with the ``[convolutional]`` right before it, the 1x1 convolution with bias that
  gives ``len(mask) * (5 + classes)`` channels. When the layer before a ``[yolo]`` is not a
  ``[convolutional]``, the head is the ``[yolo]`` alone.
* **backbone**: layers ``0..b``, where ``b`` is

  1. the last ``[shortcut]`` before the first ``[yolo]``, when there is one: Darknet-53's last
     residual block, layer 74 of yolov3 and yolov3-spp, whose output is the stride-32 map;
  2. otherwise (a cfg without residual blocks, such as yolov3-tiny) the layer just before the
     first 1x1 ``[convolutional]`` that follows the last downsampling layer before the first
     ``[yolo]``. A downsampling layer is a ``[convolutional]`` or ``[maxpool]`` whose output
     stride (:func:`~yolov3.model.cfg.layer_strides`) is larger than its input's, the
     previous layer's (the image counts as stride 1). In yolov3-tiny that is the stride-2
     ``[maxpool]`` 9; the first 1x1 convolution after it is layer 13, so the backbone is layers
     0-12 and ends with the 1024-filter 3x3 convolution at stride 32. Without a downsampling
     layer the search starts at layer 0; without a 1x1 convolution in the searched layers the
     backbone ends just before the first head. The backbone may then be empty.
* **upsampling network**: every other layer. In yolov3 that is layers 75-80, 83-92 and 95-104,
  so the parts interleave: each head sits between two stretches of the upsampling network.

Only the cfg is read: no network is built and no tensor is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yolov3.errors import ConfigError
from yolov3.model.cfg import Section, layer_strides

BACKBONE = "backbone"
UPSAMPLING = "upsampling network"


@dataclass(frozen=True)
class NetworkParts:
    """Which layers form the backbone, the upsampling network and each head of a network.

    ``backbone`` and each of ``heads`` (one per YOLO layer, in cfg order) are ranges of layer
    indices; the upsampling network is every other layer. ``strides`` holds each layer's
    stride (input pixels per output pixel).
    """

    num_layers: int
    backbone: range
    heads: tuple[range, ...]
    strides: tuple[float, ...]

    def part_of(self, layer: int) -> str:
        """The part that layer ``layer`` belongs to: ``backbone``, ``upsampling network`` or
        ``head k`` (k from 1, in cfg order)."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} is not one of the layers 0..{self.num_layers - 1}")
        if layer in self.backbone:
            return BACKBONE
        for k, head in enumerate(self.heads, start=1):
            if layer in head:
                return f"head {k}"
        return UPSAMPLING

    @property
    def upsampling(self) -> tuple[int, ...]:
        """The layers of the upsampling network: those of neither the backbone nor a head."""
        return tuple(i for i in range(self.num_layers) if self.part_of(i) == UPSAMPLING)

    @property
    def head_strides(self) -> tuple[float, ...]:
        """The stride of each YOLO layer (32, 16, 8 in yolov3), in cfg order."""
        return tuple(self.strides[head[-1]] for head in self.heads)

    def groups(self) -> list[tuple[str, range]]:
        """The parts in layer order as ``(name, layers)`` runs of consecutive layers; a part
        that the heads interrupt (the upsampling network) appears once per stretch."""
        runs: list[tuple[str, range]] = []
        for i in range(self.num_layers):
            name = self.part_of(i)
            if runs and runs[-1][0] == name:
                runs[-1] = (name, range(runs[-1][1].start, i + 1))
            else:
                runs.append((name, range(i, i + 1)))
        return runs


def _is_1x1_conv(sec: Section) -> bool:
    return sec.type == "convolutional" and sec.get_int("size", 1) == 1


def network_parts(sections: Sequence[Section]) -> NetworkParts:
    """The backbone, upsampling network and heads of the network that ``sections`` (a parsed
    cfg, ``[net]`` first) define, by the rule of this module's docstring."""

    layers = list(sections[1:])
    strides = layer_strides(sections)
    yolos = [i for i, sec in enumerate(layers) if sec.type == "yolo"]
    if not yolos:
        raise ConfigError(f"{sections[0].source}: the cfg has no [yolo] layer")
    heads = tuple(
        range(i - 1, i + 1) if i > 0 and layers[i - 1].type == "convolutional" else range(i, i + 1)
        for i in yolos
    )
    first_yolo = yolos[0]
    shortcuts = [i for i in range(first_yolo) if layers[i].type == "shortcut"]
    if shortcuts:
        end = shortcuts[-1] + 1
    else:
        downsampling = [
            i for i in range(first_yolo)
            if layers[i].type in ("convolutional", "maxpool")
            and strides[i] > (strides[i - 1] if i else 1.0)
        ]
        start = downsampling[-1] + 1 if downsampling else 0
        end = next((i for i in range(start, first_yolo) if _is_1x1_conv(layers[i])),
                   heads[0].start)
    return NetworkParts(len(layers), range(end), heads, tuple(strides))
