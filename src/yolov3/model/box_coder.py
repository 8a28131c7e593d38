"""Darknet's box parametrisation of a YOLO layer: raw ``tx, ty, tw, th`` against the layer's grid
cells and anchors (the paper's Figure 2), in the spirit of torchvision's ``BoxCoder``.

A prediction at the cell in column ``c_x``, row ``c_y`` with anchor ``(p_w, p_h)`` is the box

    x = (sigmoid(tx) + c_x) * stride_x        w = p_w * exp(tw)
    y = (sigmoid(ty) + c_y) * stride_y        h = p_h * exp(th)

in pixels of the network input (darknet's ``get_yolo_box`` gives it as fractions of the input),
``stride`` being the input pixels per cell. Training learns ``sigmoid(tx)``, ``sigmoid(ty)``
and the raw ``tw``, ``th`` (``forward_yolo_layer``), so a ground truth is encoded as the targets

    sigmoid(tx)* = x / stride_x - c_x         tw* = log(w / p_w + 1e-16)

(``ty*``, ``th*`` likewise; ``c_x``, ``c_y`` the cell that holds the centre; the ``1e-16`` is
DeNA's guard against the log of 0). :meth:`BoxCoder.decode_targets` maps the targets back to
the box. With strides that are powers of two (any input that is a multiple of the network's
downsampling) ``x / stride_x`` is darknet's ``truth.x * l.w`` to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# DeNA's guard against the log of a zero size in the targets.
_LOG_GUARD = 1e-16


@dataclass(frozen=True)
class BoxCoder:
    """Encodes boxes into one YOLO layer's targets and decodes its raw outputs into boxes.

    ``grid_hw`` is the layer's (h, w) grid, ``stride`` its (y, x) input pixels per cell. Boxes
    are (..., 4) ``cx, cy, w, h`` in input pixels; anchors (..., 2) ``w, h`` in input pixels;
    cells (..., 2) column, row. Arguments broadcast against each other.
    """

    grid_hw: tuple[int, int]
    stride: tuple[float, float]

    @classmethod
    def of(cls, input_hw: tuple[int, int], grid_hw: tuple[int, int]) -> BoxCoder:
        """The coder of a layer whose (h, w) grid covers an (H, W) network input. (Sizes read
        from tensor shapes stay as they are, so that an ONNX export keeps them dynamic.)"""
        h, w = grid_hw
        return cls((h, w), (input_hw[0] / h, input_hw[1] / w))

    def grid(self, device: torch.device | None = None, dtype: torch.dtype = torch.float32
             ) -> Tensor:
        """(h, w, 2) column ``c_x`` and row ``c_y`` of every cell of the grid."""
        h, w = self.grid_hw
        rows, columns = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                                       torch.arange(w, device=device, dtype=dtype),
                                       indexing="ij")
        return torch.stack([columns, rows], dim=-1)

    def decode(self, raw: Tensor, anchors: Tensor, cells: Tensor | float,
               max_log_size: float | None = None) -> Tensor:
        """Boxes (..., 4) from raw ``tx, ty, tw, th`` (..., 4) at ``cells`` with ``anchors``
        (the module docstring's decoding). ``cells`` 0 gives the boxes from their cell's
        corner. ``max_log_size`` clamps ``tw``, ``th`` from above (a bounded exp)."""
        log_wh = raw[..., 2:4]
        if max_log_size is not None:
            log_wh = log_wh.clamp(max=max_log_size)
        return self._boxes(torch.sigmoid(raw[..., 0:2]), log_wh, anchors, cells)

    def decode_targets(self, targets: Tensor, anchors: Tensor, cells: Tensor | float) -> Tensor:
        """Boxes (..., 4) from targets ``sigmoid(tx)*, sigmoid(ty)*, tw*, th*`` (..., 4) at
        ``cells`` with ``anchors``: the inverse of :meth:`encode`."""
        return self._boxes(targets[..., 0:2], targets[..., 2:4], anchors, cells)

    def encode(self, boxes: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor]:
        """The cells (..., 2) long, column and row of the cell that holds each box's centre (a
        centre on the far edge stays in the last cell), and the targets (..., 4)
        ``sigmoid(tx)*, sigmoid(ty)*, tw*, th*`` of ``boxes`` (..., 4) against ``anchors``."""
        centre = boxes[..., 0:2] / boxes.new_tensor([self.stride[1], self.stride[0]])
        last = torch.tensor([self.grid_hw[1] - 1, self.grid_hw[0] - 1], device=boxes.device)
        cells = torch.minimum(centre.floor().long().clamp(min=0), last)
        size = boxes[..., 2:4] / anchors + _LOG_GUARD
        return cells, torch.cat([centre - cells, size.log()], dim=-1)

    def _boxes(self, offset_xy: Tensor, log_wh: Tensor, anchors: Tensor, cells: Tensor | float
               ) -> Tensor:
        """``(offset + cell) * stride`` and ``anchor * exp(log size)``, as (..., 4) boxes."""
        grid_xy = offset_xy + cells
        x = grid_xy[..., 0:1] * self.stride[1]  # scalars: an export keeps them dynamic
        y = grid_xy[..., 1:2] * self.stride[0]
        return torch.cat([x, y, torch.exp(log_wh) * anchors], dim=-1)
