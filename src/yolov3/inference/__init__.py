"""Inference: darknet's detection protocol on letterboxed images, and annotated pictures."""

from yolov3.inference.detector import Detections, Detector
from yolov3.inference.options import DetectOptions
from yolov3.inference.postprocess import postprocess

__all__ = ["DetectOptions", "Detections", "Detector", "postprocess"]
