"""Pictures of how YOLOv3 sees an image: anchors, target assignment and channel roles."""

from yolov3.explain.anchors import draw_anchors
from yolov3.explain.assign import (
    AssignLabel,
    AssignmentView,
    draw_assignment,
    explain_assignment,
)
from yolov3.explain.channels import ChannelView, draw_channels, explain_channels
from yolov3.explain.figure import save_png

__all__ = [
    "AssignLabel",
    "AssignmentView",
    "ChannelView",
    "draw_anchors",
    "draw_assignment",
    "draw_channels",
    "explain_assignment",
    "explain_channels",
    "save_png",
]
