"""COCO's detection metric: COCOeval, silenced, with per-class numbers.

COCOeval runs as faster-coco-eval's ``COCOeval_faster``, the C++ port of pycocotools' COCOeval:
the same matching, interpolation and 12 numbers (its precision array equals pycocotools' to
1e-15 on coco128; tests/test_ap_reference.py and test_evaluation.py compare them on real and
hand-made sets), several times faster, which is most of ``val``'s time after the network."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

# The 12 numbers of ``COCOeval.summarize``, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclass
class CocoMetrics:
    """The result of COCOeval: ``stats`` (the 12 numbers, -1 where the ground truth has no box
    of that size), ``per_class`` (category id, name, ground-truth boxes, AP and AP50, None
    without ground truth), and the precision at IoU 0.5 (all areas, 100 detections per image)
    for each recall threshold and class, the PR curves."""

    stats: dict[str, float]
    per_class: list[dict[str, Any]]
    recall: np.ndarray
    precision50: np.ndarray


def _coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _mean_valid(values: np.ndarray) -> float | None:
    """Mean over the entries COCOeval filled in (it writes -1 where there is nothing)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else None


def coco_metrics(ground_truth: dict[str, Any], detections: list[dict[str, Any]]) -> CocoMetrics:
    """COCOeval (``bbox``) of ``detections`` in COCO's results format (image_id, category_id,
    bbox x, y, w, h, score) against ``ground_truth`` in COCO's annotation format."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _coco(ground_truth)
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])
        else:
            dt = _coco({"images": ground_truth["images"], "annotations": [],
                        "categories": ground_truth["categories"]})
        ev = COCOeval_faster(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # precision: [IoU threshold, recall threshold, class, area range, max detections]
    precision = ev.eval["precision"]
    all_area, most = ev.params.areaRngLbl.index("all"), len(ev.params.maxDets) - 1
    names = {c["id"]: c["name"] for c in ground_truth["categories"]}
    per_class = []
    for k, cat in enumerate(ev.params.catIds):
        boxes = len(gt.getAnnIds(catIds=[cat], iscrowd=False))
        per_class.append({
            "id": int(cat), "name": names[cat], "boxes": boxes,
            "AP": _mean_valid(precision[:, :, k, all_area, most]),
            "AP50": _mean_valid(precision[0, :, k, all_area, most]),
        })
    return CocoMetrics(
        stats=dict(zip(STAT_NAMES, (float(s) for s in ev.stats[: len(STAT_NAMES)]),
                       strict=True)),
        per_class=per_class,
        recall=np.asarray(ev.params.recThrs),
        precision50=precision[0, :, :, all_area, most],
    )
