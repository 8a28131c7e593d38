"""Darknet's training objective: target assignment and the YOLOv3 loss."""

from yolov3.loss.assign import (
    ASSIGN_RULES,
    BEST_ANCHOR,
    Assignment,
    AssignRule,
    LayerTargets,
    Matches,
    anchor_shape_iou,
    assign_targets,
    ignore_mask,
    padded_gt_boxes,
)
from yolov3.loss.yolo_loss import (
    BOX_LOSSES,
    DARKNET_LOSS,
    IOU_PARTS,
    OBJ_TARGETS,
    PARTS,
    LossOptions,
    layer_loss,
    yolo_loss,
)

__all__ = [
    "ASSIGN_RULES",
    "BEST_ANCHOR",
    "BOX_LOSSES",
    "DARKNET_LOSS",
    "IOU_PARTS",
    "OBJ_TARGETS",
    "PARTS",
    "AssignRule",
    "Assignment",
    "LayerTargets",
    "LossOptions",
    "Matches",
    "anchor_shape_iou",
    "assign_targets",
    "ignore_mask",
    "layer_loss",
    "padded_gt_boxes",
    "yolo_loss",
]
