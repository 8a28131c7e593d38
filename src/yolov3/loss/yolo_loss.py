"""Darknet's YOLOv3 loss (Part 3 of the blog series): sums, not means, over all YOLO layers.

On the anchors that :func:`~yolov3.loss.assign.assign_targets` makes responsible for a ground
truth (GT):

- ``xy``: binary cross-entropy of sigmoid(tx, ty) against the offsets, weighted by
  ``scale = 2 - w * h``;
- ``wh``: ``0.5 * scale * (tw - tw_target) ** 2`` for tw and th;
- ``cls``: binary cross-entropy of each class's sigmoid against the (accumulated) one-hot;

and on every anchor that is not ignored (:func:`~yolov3.loss.assign.ignore_mask`):

- ``obj``: binary cross-entropy of sigmoid(to) against 1 on responsible anchors, 0 elsewhere.

That is :data:`DARKNET_LOSS`. :class:`LossOptions` holds the switches of the improved recipes,
each off at darknet's value: an IoU box loss (GIoU, DIoU or CIoU from torchvision) in place of
``xy`` and ``wh``, weights (gains) of the three terms, label smoothing of the class targets, the
predicted box's IoU with its GT as the objectness target, and the anchors that learn a GT
(:class:`~yolov3.loss.assign.AssignRule`).

The gradient of each term with respect to the raw outputs is darknet's delta (with the sign of a
gradient): ``scale * (sigmoid(t) - target)`` for x, y; ``scale * (t - target)`` for w, h;
``sigmoid(t) - target`` for objectness and classes. The cross-entropies are computed from the
logits, which is numerically stable and equal to the sigmoid-then-log form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import (
    box_convert,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)

from yolov3.errors import choice_problem, raise_problems
from yolov3.loss.assign import (
    BEST_ANCHOR,
    AssignRule,
    LayerTargets,
    assign_targets,
    ignore_mask,
    padded_gt_boxes,
)
from yolov3.model.box_coder import BoxCoder
from yolov3.model.layers import YOLOLayer

#: Darknet's loss parts.
PARTS = ("xy", "wh", "obj", "cls")
#: The parts with an IoU box loss.
IOU_PARTS = ("box", "obj", "cls")
#: The box losses: darknet's (``xy`` + ``wh``) and torchvision's IoU losses.
IOU_LOSSES = {
    "giou": generalized_box_iou_loss,
    "diou": distance_box_iou_loss,
    "ciou": complete_box_iou_loss,
}
BOX_LOSSES = ("darknet", *IOU_LOSSES)
#: Objectness targets of the responsible anchors: darknet's 1, or the IoU of the predicted box
#: with its GT (detached, at least 0).
OBJ_TARGETS = ("one", "iou")
# exp(tw) above this is no box any input holds: the IoU losses clamp tw, th here.
_MAX_LOG_SIZE = 8.0


@dataclass(frozen=True)
class LossOptions:
    """How the loss is made, darknet's values as defaults (see the module docstring).

    ``box``: one of :data:`BOX_LOSSES`. The IoU losses replace ``xy`` and ``wh`` by one
    ``box`` part, the sum over responsible anchors of ``1 - GIoU`` (DIoU, CIoU) of the
    predicted box and its GT, unweighted by darknet's ``2 - w h`` (an IoU does not depend on
    the box's size). ``box_gain``, ``obj_gain``, ``cls_gain`` multiply the parts.
    ``label_smoothing`` eps: class targets ``1 - eps / 2`` and ``eps / 2`` instead of 1 and 0.
    ``obj_target``: one of :data:`OBJ_TARGETS`. ``assign``: which anchors learn a GT.
    """

    box: str = "darknet"
    box_gain: float = 1.0
    obj_gain: float = 1.0
    cls_gain: float = 1.0
    label_smoothing: float = 0.0
    obj_target: str = "one"
    assign: AssignRule = field(default=BEST_ANCHOR)

    def __post_init__(self) -> None:
        """Checked as the ``loss`` config keys of the same names."""
        problems = [*choice_problem("loss.box", self.box, BOX_LOSSES),
                    *choice_problem("loss.obj_target", self.obj_target, OBJ_TARGETS)]
        for name, gain in (("box_gain", self.box_gain), ("obj_gain", self.obj_gain),
                           ("cls_gain", self.cls_gain)):
            if not (math.isfinite(gain) and gain > 0):
                problems.append(f"loss.{name} must be a number > 0, got {gain}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"loss.label_smoothing must be in [0, 1), got "
                            f"{self.label_smoothing}")
        raise_problems(problems)

    @property
    def parts(self) -> tuple[str, ...]:
        """The names of the loss parts: :data:`PARTS` or :data:`IOU_PARTS`."""
        return PARTS if self.box == "darknet" else IOU_PARTS


#: Darknet's loss.
DARKNET_LOSS = LossOptions()


def yolo_loss(
    layers: Sequence[YOLOLayer],
    raw_outputs: Sequence[Tensor],
    targets: Sequence[Tensor],
    input_hw: tuple[int, int],
    options: LossOptions = DARKNET_LOSS,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The training objective of a batch: ``total, parts`` (darknet's with the default
    ``options``).

    ``layers`` are the network's YOLO layers (``model.yolo_layers``: anchors, masks, ignore
    thresholds), ``raw_outputs`` their raw predictions ``model(images)`` (per YOLO layer
    (B, A, h, w, 5+C) logits), ``targets`` holds B tensors (n_i, 5) of ``class, xc, yc, w, h``
    normalised to the network input of size ``input_hw = (H, W)``. ``parts`` maps the names of
    ``options.parts`` (darknet: ``xy``, ``wh``, ``obj``, ``cls``) to 0-d float32 tensors in
    the autograd graph; ``total`` is their sum.
    """
    grid_hw = [(r.shape[2], r.shape[3]) for r in raw_outputs]
    assignment = assign_targets(layers, grid_hw, targets, input_hw, options.assign)
    gt_boxes, gt_valid = padded_gt_boxes(targets, input_hw, layers[0].anchors.device)
    parts = {name: raw_outputs[0].new_zeros((), dtype=torch.float32) for name in options.parts}
    for layer, raw, layer_targets in zip(layers, raw_outputs, assignment.layers, strict=True):
        ignored = ignore_mask(layer, raw, gt_boxes, gt_valid, input_hw)
        stride = BoxCoder.of(input_hw, (raw.shape[2], raw.shape[3])).stride
        for name, value in layer_loss(raw.float(), layer_targets, ignored, options,
                                      stride).items():
            parts[name] = parts[name] + value
    return sum(parts.values()), parts


def layer_loss(
    raw: Tensor,
    targets: LayerTargets,
    ignored: Tensor,
    options: LossOptions = DARKNET_LOSS,
    stride: tuple[float, float] = (1.0, 1.0),
) -> dict[str, Tensor]:
    """The loss sums of one YOLO layer from its raw logits (B, A, h, w, 5+C), its
    :class:`~yolov3.loss.assign.LayerTargets` and its (B, A, h, w) ignore mask. ``stride`` is
    the layer's (y, x) cell size in input pixels, which only the IoU-based options use."""
    pred = raw[targets.cells.unbind(1)]  # (n, 5+C) at the responsible cells
    obj_target = targets.assigned.to(raw.dtype)
    parts: dict[str, Tensor] = {}
    if options.box == "darknet":
        scale = targets.scale[:, None]
        parts["xy"] = options.box_gain * F.binary_cross_entropy_with_logits(
            pred[:, 0:2], targets.box[:, 0:2], weight=scale, reduction="sum")
        parts["wh"] = options.box_gain * 0.5 * (
            scale * (pred[:, 2:4] - targets.box[:, 2:4]) ** 2).sum()
    if options.box != "darknet" or options.obj_target == "iou":
        coder = BoxCoder((raw.shape[2], raw.shape[3]), stride)
        pred_box, gt_box = _cell_boxes(pred, targets, coder)
        if options.box != "darknet":
            loss = IOU_LOSSES[options.box](pred_box, gt_box, reduction="sum")
            parts["box"] = options.box_gain * loss
        if options.obj_target == "iou":
            with torch.no_grad():
                iou = _paired_iou(pred_box, gt_box).clamp_(min=0)
            obj_target = obj_target.index_put(targets.cells.unbind(1), iou)
    obj_weight = (~ignored | targets.assigned).to(raw.dtype)
    parts["obj"] = options.obj_gain * F.binary_cross_entropy_with_logits(
        raw[..., 4], obj_target, weight=obj_weight, reduction="sum")
    cls_target = targets.cls
    if options.label_smoothing:
        cls_target = cls_target * (1 - options.label_smoothing) + options.label_smoothing / 2
    parts["cls"] = options.cls_gain * F.binary_cross_entropy_with_logits(
        pred[:, 5:], cls_target, reduction="sum")
    return parts


def _cell_boxes(pred: Tensor, targets: LayerTargets, coder: BoxCoder) -> tuple[Tensor, Tensor]:
    """The predicted and the GT boxes (n, 4) x1, y1, x2, y2 of the responsible cells, in input
    pixels from the cell's corner (an IoU does not depend on the cell's position): the
    prediction decoded as the YOLO layer decodes it (``tw``, ``th`` clamped), in the autograd
    graph."""
    pred_box = coder.decode(pred[:, 0:4], targets.anchor_wh, 0.0, max_log_size=_MAX_LOG_SIZE)
    gt_box = coder.decode_targets(targets.box, targets.anchor_wh, 0.0)
    return box_convert(pred_box, "cxcywh", "xyxy"), box_convert(gt_box, "cxcywh", "xyxy")


def _paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """(n,) IoU of box ``a[k]`` with ``b[k]`` (x1, y1, x2, y2), the diagonal of
    ``torchvision.ops.box_iou`` without the (n, n) matrix."""
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter).clamp(min=1e-9)
