"""YOLOv3 in PyTorch: darknet-exact model, weights, training and evaluation.

The public names load on first use (:mod:`yolov3.lazy`): ``import yolov3`` and the command
line's ``--help`` import no torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yolov3.lazy import lazy_exports

if TYPE_CHECKING:
    from yolov3.api import YOLO, Results
    from yolov3.errors import YoloError
    from yolov3.model import BUILTIN_CFGS, Decoded, YOLOv3, build_model
    from yolov3.weights.darknet import LoadReport, load_darknet_weights, save_darknet_weights
    from yolov3.weights.load import from_darknet, load_model

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_CFGS",
    "YOLO",
    "Decoded",
    "LoadReport",
    "Results",
    "YOLOv3",
    "YoloError",
    "build_model",
    "from_darknet",
    "load_darknet_weights",
    "load_model",
    "save_darknet_weights",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "BUILTIN_CFGS": "yolov3.model.cfg",
    "Decoded": "yolov3.model.network",
    "LoadReport": "yolov3.weights.darknet",
    "Results": "yolov3.api",
    "YOLO": "yolov3.api",
    "YOLOv3": "yolov3.model.network",
    "YoloError": "yolov3.errors",
    "build_model": "yolov3.model.network",
    "from_darknet": "yolov3.weights.load",
    "load_darknet_weights": "yolov3.weights.darknet",
    "load_model": "yolov3.weights.load",
    "save_darknet_weights": "yolov3.weights.darknet",
})
