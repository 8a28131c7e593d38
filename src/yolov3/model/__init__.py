"""The network: cfg parsing, darknet layer blocks and the model built from them."""

from yolov3.model.cfg import BUILTIN_CFGS, load_cfg, parse_cfg_text
from yolov3.model.layers import YOLOLayer
from yolov3.model.network import YOLOv3, build_model

__all__ = ["BUILTIN_CFGS", "YOLOLayer", "YOLOv3", "build_model", "load_cfg", "parse_cfg_text"]
