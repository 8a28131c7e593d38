"""YOLOv3 in PyTorch: darknet-exact model, weights, training and evaluation."""

from __future__ import annotations

from yolov3.errors import YoloError
from yolov3.model import BUILTIN_CFGS, Decoded, YOLOv3, build_model
from yolov3.weights.darknet import LoadReport, load_darknet_weights, save_darknet_weights
from yolov3.weights.load import from_darknet, load_model

__version__ = "0.1.0"


__all__ = [
    "BUILTIN_CFGS",
    "Decoded",
    "LoadReport",
    "YOLOv3",
    "YoloError",
    "build_model",
    "from_darknet",
    "load_darknet_weights",
    "load_model",
    "save_darknet_weights",
]
