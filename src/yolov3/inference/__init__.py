"""Inference: letterboxing, darknet's detection protocol, and annotated pictures."""

from yolov3.inference.detector import Detections, Detector
from yolov3.inference.letterbox import Letterbox, letterbox, load_image
from yolov3.inference.postprocess import postprocess

__all__ = ["Detections", "Detector", "Letterbox", "letterbox", "load_image", "postprocess"]
