"""The network (Part 1 of the blog series): cfg parsing, darknet's layer blocks, and YOLOv3 built
from them: the backbone, the upsampling network and the YOLO layers.

The names load on first use (:mod:`yolov3.lazy`), so that :mod:`yolov3.model.cfg` (the cfg
files, the built-in names) is read without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolov3.lazy import lazy_exports

if TYPE_CHECKING:
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

__getattr__, __dir__ = lazy_exports(__name__, {
    "BUILTIN_CFGS": "yolov3.model.cfg",
    "BoxCoder": "yolov3.model.box_coder",
    "Decoded": "yolov3.model.network",
    "YOLOLayer": "yolov3.model.layers",
    "YOLOv3": "yolov3.model.network",
    "build_model": "yolov3.model.network",
    "load_cfg": "yolov3.model.cfg",
    "parse_cfg_text": "yolov3.model.cfg",
})
