"""Darknet's YOLOv3 loss (Part 3 of the blog series): sums, not means, over all YOLO layers.

On the anchors that :func:`~yolov3.loss.assign.assign_targets` makes responsible for a ground
truth (GT):

- ``xy``: binary cross-entropy of sigmoid(tx, ty) against the offsets, weighted by
  ``scale = 2 - w * h``;
- ``wh``: ``0.5 * scale * (tw - tw_target) ** 2`` for tw and th;
- ``cls``: binary cross-entropy of each class's sigmoid against the (accumulated) one-hot;

and on every anchor that is not ignored (:func:`~yolov3.loss.assign.ignore_mask`):

- ``obj``: binary cross-entropy of sigmoid(to) against 1 on responsible anchors, 0 elsewhere.

The gradient of each term with respect to the raw outputs is darknet's delta (with the sign of a
gradient): ``scale * (sigmoid(t) - target)`` for x, y; ``scale * (t - target)`` for w, h;
``sigmoid(t) - target`` for objectness and classes. The cross-entropies are computed from the
logits, which is numerically stable and equal to the sigmoid-then-log form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from yolov3.loss.assign import LayerTargets, assign_targets, ignore_mask, padded_gt_boxes
from yolov3.model.layers import YOLOLayer

PARTS = ("xy", "wh", "obj", "cls")


def yolo_loss(
    layers: Sequence[YOLOLayer],
    raw_outputs: Sequence[Tensor],
    targets: Sequence[Tensor],
    input_hw: tuple[int, int],
) -> tuple[Tensor, dict[str, Tensor]]:
    """Darknet's training objective of a batch: ``total, parts``.

    ``layers`` are the network's YOLO layers (``model.yolo_layers``: anchors, masks, ignore
    thresholds), ``raw_outputs`` their raw predictions ``model(images)`` (per YOLO layer
    (B, A, h, w, 5+C) logits), ``targets`` holds B tensors (n_i, 5) of ``class, xc, yc, w, h``
    normalised to the network input of size ``input_hw = (H, W)``. ``parts`` maps ``xy``,
    ``wh``, ``obj``, ``cls`` to 0-d float32 tensors in the autograd graph; ``total`` is their
    sum.
    """
    grid_hw = [(r.shape[2], r.shape[3]) for r in raw_outputs]
    assignment = assign_targets(layers, grid_hw, targets, input_hw)
    gt_boxes, gt_valid = padded_gt_boxes(targets, input_hw, layers[0].anchors.device)
    parts = {name: raw_outputs[0].new_zeros((), dtype=torch.float32) for name in PARTS}
    for layer, raw, layer_targets in zip(layers, raw_outputs, assignment.layers, strict=True):
        ignored = ignore_mask(layer, raw, gt_boxes, gt_valid, input_hw)
        for name, value in layer_loss(raw.float(), layer_targets, ignored).items():
            parts[name] = parts[name] + value
    return sum(parts.values()), parts


def layer_loss(raw: Tensor, targets: LayerTargets, ignored: Tensor) -> dict[str, Tensor]:
    """The four loss sums of one YOLO layer from its raw logits (B, A, h, w, 5+C), its
    :class:`~yolov3.loss.assign.LayerTargets` and its (B, A, h, w) ignore mask."""
    obj_target = targets.assigned.to(raw.dtype)
    obj_weight = (~ignored | targets.assigned).to(raw.dtype)
    obj = F.binary_cross_entropy_with_logits(
        raw[..., 4], obj_target, weight=obj_weight, reduction="sum"
    )
    pred = raw[targets.cells.unbind(1)]  # (n, 5+C) at the responsible cells
    scale = targets.scale[:, None]
    xy = F.binary_cross_entropy_with_logits(
        pred[:, 0:2], targets.box[:, 0:2], weight=scale, reduction="sum"
    )
    wh = 0.5 * (scale * (pred[:, 2:4] - targets.box[:, 2:4]) ** 2).sum()
    cls = F.binary_cross_entropy_with_logits(pred[:, 5:], targets.cls, reduction="sum")
    return {"xy": xy, "wh": wh, "obj": obj, "cls": cls}
