"""Darknet's COCO protocol on any dataset: letterboxed batched inference, every (box, class)
above a low threshold, per-class NMS, boxes in image pixels, scored by COCOeval."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from yolov3.backends import make_detector
from yolov3.classes import default_names
from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.convert import coco_dict
from yolov3.datasets.problems import UNREADABLE
from yolov3.evaluation.class_map import class_mapping
from yolov3.evaluation.confusion import confusion_matrix
from yolov3.evaluation.curves import score_curves
from yolov3.evaluation.metrics import CocoMetrics, coco_metrics
from yolov3.evaluation.report import finish_report, format_table, metrics_dict, start_report
from yolov3.inference import Detections
from yolov3.inference.batching import letterboxed_batches
from yolov3.inference.options import DetectOptions, check_options
from yolov3.model.network import YOLOv3


def ground_truth(dataset: DetectionDataset, skipped: set[int]) -> dict[str, Any]:
    """The metric's ground truth: a COCO annotation file itself (COCO's own areas), every
    other format converted to COCO's; without the images whose ids are in ``skipped``."""
    if not isinstance(dataset, CocoDataset):
        return coco_dict(dataset, (dataset.annotations(i) for i in range(len(dataset))
                                   if int(dataset.image_ids[i]) not in skipped))
    gt = dataset.ground_truth()
    if skipped:
        gt["images"] = [im for im in gt["images"] if im["id"] not in skipped]
        gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] not in skipped]
    return gt


def coco_results(image_id: int, dets: Detections, category: np.ndarray) -> list[dict[str, Any]]:
    """Detections of one image in COCO's results format; ``category`` maps a model class to
    the dataset's category id (-1: not a dataset class, dropped)."""
    cats = category[dets.labels.numpy()]
    keep = cats >= 0
    xywh = dets.boxes.numpy()[keep].astype(np.float64)
    xywh[:, 2:] -= xywh[:, :2]
    return [{"image_id": image_id, "category_id": c, "bbox": [round(v, 2) for v in box],
             "score": round(s, 5)}
            for c, box, s in zip(cats[keep].tolist(), xywh.tolist(),
                                 dets.scores.numpy()[keep].tolist(), strict=True)]


def evaluate(
    model: YOLOv3,
    dataset: DetectionDataset,
    options: DetectOptions = DetectOptions.for_evaluation(),  # noqa: B008 - frozen
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    out_dir: str | Path | None = None,
    model_names: list[str] | None = None,
    progress: bool = True,
    confusion_conf: float = 0.25,
    confusion_iou: float = 0.45,
) -> dict[str, Any]:
    """COCO AP of ``model`` on ``dataset`` with the detection ``options``: by default
    darknet's protocol (:meth:`DetectOptions.for_evaluation`: one detection per box and class
    whose objectness x class probability exceeds 0.005, per-class NMS at IoU 0.45, fp32, at
    the model's own input size).

    Returns the metrics: ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl``, ``AR1``,
    ``AR10``, ``AR100``, ``ARs``, ``ARm``, ``ARl``, ``per_class``, plus ``images`` and
    ``timing`` (seconds in the network with NMS, in COCOeval, images per second),
    ``best_f1`` (the score threshold of the best mean F1 at IoU 0.5, with P, R, F1), and
    ``table``, the printable summary. With ``out_dir``, writes the
    :data:`~yolov3.evaluation.report.REPORT_FILES` there (the confusion matrix at
    ``confusion_conf`` and ``confusion_iou``). An unreadable image is added to
    ``dataset.problems`` (an error if the dataset is strict) and left out of the ground truth.
    ``model_names`` name the model's classes when they differ from the dataset's (default:
    COCO's names for 80 classes). The network runs as ``detect`` runs it
    (:func:`~yolov3.backends.make_detector`: the batch-norm-folded fast copy, on
    ``options.backend``) in ``options.precision`` (``result["precision"]`` says which). The
    model's train/eval mode is restored afterwards.
    """
    options = check_options(options, "evaluate")
    was_training = model.training
    detector = make_detector(model, options, device)
    to_dataset = class_mapping(model_names or default_names(model.num_classes), dataset.names)
    category = np.append(np.asarray(dataset.category_ids, np.int64), -1)[to_dataset]
    batches = letterboxed_batches(dataset.pixels, detector.input_hw, batch_size, workers)
    predictions: list[dict[str, Any]] = []
    skipped: set[int] = set()
    start, network = time.perf_counter(), 0.0
    try:
        with tqdm(total=len(dataset), unit="img", desc="val", disable=not progress) as bar:
            for batch in batches:
                for i, message in batch.failures:
                    dataset.problems.add(message, UNREADABLE)  # raises with strict
                    skipped.add(int(dataset.image_ids[i]))
                if batch.indices:
                    t = time.perf_counter()
                    dets = detector.detect_batch(batch.inputs, batch.letterboxes)
                    network += time.perf_counter() - t
                    for i, d in zip(batch.indices, dets, strict=True):
                        predictions += coco_results(int(dataset.image_ids[i]), d, category)
                bar.update(len(batch.indices) + len(batch.failures))
    finally:
        model.train(was_training)
    inference = time.perf_counter() - start
    gt = ground_truth(dataset, skipped)
    curves = score_curves(gt, predictions)
    figures = None
    if out_dir is not None:  # its figures drawn beside COCOeval
        figures = start_report(Path(out_dir), curves,
                               confusion_matrix(gt, predictions, confusion_conf, confusion_iou))
    t = time.perf_counter()
    metrics: CocoMetrics = coco_metrics(gt, predictions)
    cocoeval = time.perf_counter() - t
    result = metrics_dict(metrics, curves)
    result["images"] = len(dataset) - len(skipped)
    result["precision"] = detector.precision
    result["timing"] = {
        "images_per_second": len(dataset) / inference,
        "inference_s": inference, "network_and_nms_s": network, "cocoeval_s": cocoeval,
    }
    if figures is not None:
        finish_report(Path(out_dir), figures, result, metrics, predictions)
    result["table"] = format_table(metrics)
    return result
