"""The network: cfg parsing, darknet layer blocks and the model built from them."""

from yolov3.model.cfg import BUILTIN_CFGS, load_cfg, parse_cfg_text
from yolov3.model.darknet import Darknet, build_model
from yolov3.model.layers import YOLOLayer

__all__ = ["BUILTIN_CFGS", "Darknet", "YOLOLayer", "build_model", "load_cfg", "parse_cfg_text"]
