"""The network (Part 1 of the blog series): cfg parsing, darknet's layer blocks, and YOLOv3 built
from them: the backbone, the upsampling network and the YOLO layers."""

from yolov3.model.box_coder import BoxCoder
from yolov3.model.cfg import BUILTIN_CFGS, load_cfg, parse_cfg_text
from yolov3.model.layers import YOLOLayer
from yolov3.model.network import Decoded, YOLOv3, build_model

__all__ = [
    "BUILTIN_CFGS",
    "BoxCoder",
    "Decoded",
    "YOLOLayer",
    "YOLOv3",
    "build_model",
    "load_cfg",
    "parse_cfg_text",
]
