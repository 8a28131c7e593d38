"""Precision, recall and F1 of each class against the score threshold, at IoU 0.5, and the
threshold at which the mean F1 over the classes is highest."""

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

# The plotted thresholds: 0, 0.001, ... 1.
PLOT_THRESHOLDS = np.linspace(0.0, 1.0, 1001)


@dataclass(frozen=True)
class ScoreCurves:
    """What P, R and F1 at any score threshold follow from: the counted detections sorted by
    class, then score, best first (``label``, ``score``, ``hit``: a true positive), and
    ``boxes[k]`` class k's ground-truth boxes, crowd regions left out. Classes in the order of
    their category ids, named ``names``; ``iou``: the overlap of a true positive."""

    names: list[str]
    label: np.ndarray
    score: np.ndarray
    hit: np.ndarray
    boxes: np.ndarray
    iou: float

    def scored_classes(self) -> np.ndarray:
        """The classes with ground-truth boxes, those that the means are over (COCOeval
        leaves the others out of AP too)."""
        return np.flatnonzero(self.boxes > 0)

    def at(self, k: int, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Precision, recall and F1 of class ``k`` (one with boxes) when the detections scored
        above each threshold are kept; the precision is 0 where none is."""
        lo, hi = np.searchsorted(self.label, [k, k + 1])
        kept = np.searchsorted(-self.score[lo:hi], -np.asarray(thresholds, np.float64))
        tp = np.concatenate([[0], np.cumsum(self.hit[lo:hi])])[kept]
        precision = np.divide(tp, kept, out=np.zeros(len(kept)), where=kept > 0)
        return precision, tp / self.boxes[k], 2 * tp / (kept + self.boxes[k])

    def mean_at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean precision, recall and F1 over the classes with boxes, at each threshold."""
        classes = self.scored_classes()
        sums = np.zeros((3, len(thresholds)))
        for k in classes.tolist():
            sums += np.stack(self.at(k, thresholds))
        p, r, f1 = sums / max(len(classes), 1)
        return p, r, f1

    def best_f1(self) -> dict[str, Any] | None:
        """The score threshold that maximises the mean F1 (the detections scored above it
        kept), the highest of equals, with the mean precision, recall and F1 there; None
        without ground-truth boxes. The thresholds tried are the detections' own scores and 0,
        so the maximum is exact."""
        classes = self.scored_classes()
        if not classes.size:
            return None
        candidates = np.unique(np.append(self.score, 0.0))[::-1]
        p, r, f1 = self.mean_at(candidates)
        i = int(np.argmax(f1))
        return {"threshold": float(candidates[i]), "P": float(p[i]), "R": float(r[i]),
                "F1": float(f1[i]), "iou": self.iou, "classes": int(classes.size)}


def score_curves(ground_truth: dict[str, Any], predictions: list[dict[str, Any]],
                 iou: float = 0.5) -> ScoreCurves:
    """The curves of ``predictions`` (COCO's results format) against ``ground_truth`` (COCO's
    annotation format), with COCOeval's matching at one IoU: in each image and class, the
    detections in score order, each taking the free box of its class that it overlaps most
    (IoU at least ``iou``); one left over that lies on a crowd region of its class is not
    counted (neither true nor false positive)."""
    ids, names = categories(ground_truth)
    truth, crowd = truth_boxes(ground_truth)
    dets, scores = detection_boxes(predictions, ids)
    t, d, overlap = overlapping_pairs(truth.subset(~crowd), dets, iou, same_class=True)
    order = np.lexsort((-overlap, d, -scores[d]))  # by score, then place, then overlap
    hit = np.zeros(len(dets), bool)
    hit[d[order[one_to_one(t[order], d[order])]]] = True
    free = np.flatnonzero(~hit)
    _, on_crowd, _ = overlapping_pairs(truth.subset(crowd), dets.subset(free), iou, crowd=True,
                                       same_class=True)
    counted = np.ones(len(dets), bool)
    counted[free[on_crowd]] = False
    keep = np.flatnonzero(counted)
    keep = keep[np.lexsort((-scores[keep], dets.label[keep]))]
    boxes = np.bincount(truth.label[~crowd], minlength=len(ids))
    return ScoreCurves(names, dets.label[keep], scores[keep], hit[keep], boxes, iou)


def curves_figure(curves: ScoreCurves) -> Figure:
    """Precision, recall and F1 against the score threshold side by side: a thin line per
    class (named up to 20 classes), the mean over the classes bold, the best mean F1 marked."""
    fig = Figure(figsize=(18, 5.5), dpi=100)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.1, top=0.94, wspace=0.15)
    axes = fig.subplots(1, 3)
    classes = curves.scored_classes()
    per_class = [curves.at(k, PLOT_THRESHOLDS) for k in classes.tolist()]
    means = curves.mean_at(PLOT_THRESHOLDS)
    best = curves.best_f1()
    for m, (ax, title) in enumerate(zip(axes, ("precision", "recall", "F1"), strict=True)):
        for k, values in zip(classes.tolist(), per_class, strict=True):
            ax.plot(PLOT_THRESHOLDS, values[m], linewidth=1, alpha=0.5,
                    label=curves.names[k] if len(classes) <= 20 else None)
        if best is not None:
            mean_label = "all classes"
            if m == 2:
                mean_label += f" {best['F1']:.3f} at {best['threshold']:g}"
            ax.plot(PLOT_THRESHOLDS, means[m], color="black", linewidth=3, label=mean_label)
            ax.axvline(best["threshold"], color="grey", linestyle=":", linewidth=1)
            ax.legend(loc="lower left", fontsize="small")
        ax.set(xlabel="score threshold", ylabel=title, xlim=(0, 1), ylim=(0, 1.01),
               title=f"{title}, IoU {curves.iou:g}")
        ax.grid(alpha=0.3)
    return fig
