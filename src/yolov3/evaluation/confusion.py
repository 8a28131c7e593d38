"""The confusion matrix of a detector: what each ground-truth box was detected as, at one score
threshold and IoU, with a background row (false positives) and column (missed boxes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from yolov3.evaluation.matching import (
    categories,
    detection_boxes,
    one_to_one,
    overlapping_pairs,
    truth_boxes,
)

BACKGROUND = "background"


@dataclass(frozen=True)
class ConfusionMatrix:
    """``counts[true, predicted]`` over the classes (categories sorted by id, named ``names``)
    and, last, the background: ``counts[k, -1]`` boxes of class k that no detection found,
    ``counts[-1, k]`` detections of class k on no object. ``conf``: detections with a score
    above it count; ``iou``: the overlap at which a detection finds a box."""

    counts: np.ndarray
    names: list[str]
    category_ids: list[int]
    conf: float
    iou: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the matrix (rows true class, columns predicted class), the names of
        its rows and columns in order, the category ids of the classes, the thresholds."""
        return {"matrix": self.counts.tolist(), "rows": "true class",
                "columns": "predicted class", "names": [*self.names, BACKGROUND],
                "category_ids": self.category_ids, "conf": self.conf, "iou": self.iou}


def confusion_matrix(ground_truth: dict[str, Any], predictions: list[dict[str, Any]],
                     conf: float = 0.25, iou: float = 0.45) -> ConfusionMatrix:
    """The confusion matrix of ``predictions`` (COCO's results format) against
    ``ground_truth`` (COCO's annotation format).

    In each image the detections with a score above ``conf`` are matched one to one to the
    boxes they overlap by IoU at least ``iou``, whatever their classes, the most overlapping
    pairs first. A matched pair counts at (true class, predicted class), a box left over at
    (class, background), a detection left over at (background, class). Crowd regions
    (``iscrowd``) count for nothing: they are not boxes to find, and a detection left over
    that lies on one (``iou`` of its area inside, COCO's rule) is no false positive."""
    ids, names = categories(ground_truth)
    truth, crowd = truth_boxes(ground_truth)
    dets, scores = detection_boxes(predictions, ids)
    dets = dets.subset(scores > conf)
    boxes = truth.subset(~crowd)
    t, d, overlap = overlapping_pairs(boxes, dets, iou)
    order = np.argsort(-overlap, kind="stable")
    matched = order[one_to_one(t[order], d[order])]
    t, d = t[matched], d[matched]
    missed = np.ones(len(boxes), bool)
    missed[t] = False
    left = np.ones(len(dets), bool)
    left[d] = False
    free = np.flatnonzero(left)
    _, on_crowd, _ = overlapping_pairs(truth.subset(crowd), dets.subset(free), iou, crowd=True)
    left[free[on_crowd]] = False
    k = len(ids)
    true = np.concatenate([boxes.label[t], boxes.label[missed], np.full(left.sum(), k)])
    predicted = np.concatenate([dets.label[d], np.full(missed.sum(), k), dets.label[left]])
    counts = np.bincount(true * (k + 1) + predicted, minlength=(k + 1) ** 2)
    return ConfusionMatrix(counts.reshape(k + 1, k + 1), names, ids, conf, iou)


def confusion_figure(matrix: ConfusionMatrix) -> Figure:
    """The matrix normalised per true class (each row sums to 1; a row without boxes is
    blank), its shares written in the cells up to 30 classes, the names along both sides at a
    size that keeps 80 classes apart."""
    n = len(matrix.names) + 1
    totals = matrix.counts.sum(axis=1, keepdims=True)
    share = np.divide(matrix.counts, totals, out=np.full(matrix.counts.shape, np.nan),
                      where=totals > 0)
    side = min(max(6.0, 0.2 * n + 3), 20.0)
    labels = [*matrix.names, BACKGROUND]
    size = min(10.0, 600 / n)
    # Fixed margins that fit the longest name (about 0.6 em a character), not tight_layout:
    # its trial drawing of 160 names was a third of the figure's time at 80 classes.
    names = 0.6 * size / 72 * max(len(name) for name in labels) + 0.6  # inches
    names = min(names, 0.4 * side)  # a very long name is cut rather than the matrix
    width = side + 1.2
    fig = Figure(figsize=(width, side), dpi=100)
    fig.subplots_adjust(left=names / width, bottom=names / side, right=1 - 0.9 / width,
                        top=1 - 0.45 / side)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=size)
    ax.set_yticks(range(n), labels, fontsize=size)
    if n <= 30:
        rows, cols = np.nonzero(share >= 0.005)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            ax.text(c, r, f"{share[r, c]:.2f}", ha="center", va="center",
                    fontsize=min(10.0, 240 / n),
                    color="white" if share[r, c] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"confusion matrix: score > {matrix.conf:g}, IoU {matrix.iou:g}")
    return fig
