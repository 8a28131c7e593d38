"""Darknet's training objective: target assignment and the YOLOv3 loss."""

from yolov3.loss.assign import (
    Assignment,
    LayerTargets,
    Matches,
    anchor_shape_iou,
    assign_targets,
    ignore_mask,
    padded_gt_boxes,
)
from yolov3.loss.yolo_loss import PARTS, layer_loss, yolo_loss

__all__ = [
    "PARTS",
    "Assignment",
    "LayerTargets",
    "Matches",
    "anchor_shape_iou",
    "assign_targets",
    "ignore_mask",
    "layer_loss",
    "padded_gt_boxes",
    "yolo_loss",
]
