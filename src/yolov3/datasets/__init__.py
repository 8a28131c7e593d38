"""The dataset formats: COCO JSON, YOLO txt, Pascal VOC and the generated demo set, read into one
interface; writing and converting between them, and checking them."""

from yolov3.datasets.base import Annotation, DetectionDataset
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.convert import coco_dict, convert
from yolov3.datasets.open import dataset_splits, open_dataset
from yolov3.datasets.sample import Sample
from yolov3.datasets.voc import VocDataset
from yolov3.datasets.yolo_txt import YoloDataset

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
