"""Datasets (COCO, YOLO txt, Pascal VOC), conversion, augmentation and the demo dataset."""

from yolov3.data.base import Annotation, DetectionDataset
from yolov3.data.coco import CocoDataset
from yolov3.data.convert import coco_dict, convert
from yolov3.data.datasets import dataset_splits, open_dataset
from yolov3.data.sample import Sample
from yolov3.data.voc import VocDataset
from yolov3.data.yolo_txt import YoloDataset

__all__ = [
    "Annotation",
    "CocoDataset",
    "DetectionDataset",
    "Sample",
    "VocDataset",
    "YoloDataset",
    "coco_dict",
    "convert",
    "dataset_splits",
    "open_dataset",
]
