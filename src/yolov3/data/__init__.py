"""Datasets (COCO, YOLO txt, Pascal VOC), conversion, augmentation and the demo dataset."""

from yolov3.data.sample import Sample

__all__ = ["Sample"]
