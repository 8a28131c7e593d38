"""Evaluation: darknet's COCO protocol and COCO's metric (COCOeval), for every dataset format."""

from yolov3.evaluation.coco_eval import evaluate
from yolov3.evaluation.confusion import ConfusionMatrix, confusion_matrix
from yolov3.evaluation.curves import ScoreCurves, score_curves
from yolov3.evaluation.metrics import STAT_NAMES, CocoMetrics, coco_metrics

__all__ = ["STAT_NAMES", "CocoMetrics", "ConfusionMatrix", "ScoreCurves", "coco_metrics",
           "confusion_matrix", "evaluate", "score_curves"]
