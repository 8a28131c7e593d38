"""Detections against ground truth outside COCOeval: the boxes of COCO's annotation and results
formats as flat arrays, the overlapping pairs of each image, and greedy one-to-one matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from yolov3.errors import DataError


@dataclass(frozen=True)
class Boxes:
    """Boxes of many images: ``image`` (n,) image ids, ``xyxy`` (n, 4) corners in pixels,
    ``label`` (n,) the index of the box's category among the categories sorted by id."""

    image: np.ndarray
    xyxy: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def subset(self, keep: np.ndarray) -> Boxes:
        """The boxes that ``keep`` (a mask or indices) selects."""
        return Boxes(self.image[keep], self.xyxy[keep], self.label[keep])


def categories(ground_truth: dict[str, Any]) -> tuple[list[int], list[str]]:
    """The category ids of a COCO annotation dict, sorted (the dataset's class order), and
    their names."""
    cats = sorted(ground_truth["categories"], key=lambda c: c["id"])
    return [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]


def _boxes(records: list[dict[str, Any]], category_ids: list[int], what: str) -> Boxes:
    ids = np.asarray(category_ids, np.int64)
    cats = np.array([r["category_id"] for r in records], np.int64)
    label = np.searchsorted(ids, cats).clip(max=max(len(ids) - 1, 0))
    unknown = cats[ids[label] != cats] if len(ids) else cats
    if unknown.size:
        raise DataError(f"{what}: category id {unknown[0]} is not one of the ground truth's "
                        f"categories ({', '.join(map(str, category_ids))})")
    xyxy = np.array([r["bbox"] for r in records], np.float64).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    return Boxes(np.array([r["image_id"] for r in records], np.int64), xyxy, label)


def truth_boxes(ground_truth: dict[str, Any]) -> tuple[Boxes, np.ndarray]:
    """The annotations of a COCO annotation dict and their ``iscrowd`` flags (crowd regions,
    and VOC's difficult boxes, which the converter marks so: ignored by the metric)."""
    anns = ground_truth["annotations"]
    boxes = _boxes(anns, categories(ground_truth)[0], "ground truth")
    return boxes, np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)


def detection_boxes(predictions: list[dict[str, Any]],
                    category_ids: list[int]) -> tuple[Boxes, np.ndarray]:
    """Detections in COCO's results format (image_id, category_id, bbox x, y, w, h, score) and
    their scores."""
    return (_boxes(predictions, category_ids, "predictions"),
            np.array([p["score"] for p in predictions], np.float64))


def overlapping_pairs(truth: Boxes, dets: Boxes, min_overlap: float, crowd: bool = False,
                      same_class: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (ground truth, detection) pair of one image whose overlap is at least
    ``min_overlap`` (and above 0), as indices into ``truth`` and ``dets`` and the overlap: the
    IoU, or with ``crowd`` the fraction of the detection inside the ground-truth box (COCO's
    overlap with a crowd region). ``same_class`` keeps the pairs of one label only."""
    t_order = np.argsort(truth.image, kind="stable")
    d_order = np.argsort(dets.image, kind="stable")
    t_ids, t_start, t_count = np.unique(truth.image[t_order], return_index=True,
                                        return_counts=True)
    d_ids, d_start, d_count = np.unique(dets.image[d_order], return_index=True,
                                        return_counts=True)
    _, ti, di = np.intersect1d(t_ids, d_ids, assume_unique=True, return_indices=True)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for a, b in zip(ti.tolist(), di.tolist(), strict=True):  # one image at a time
        t = t_order[t_start[a]:t_start[a] + t_count[a]]
        d = d_order[d_start[b]:d_start[b] + d_count[b]]
        overlap = box_iou(torch.from_numpy(truth.xyxy[t]), torch.from_numpy(dets.xyxy[d])).numpy()
        if crowd:
            overlap = _inside_fraction(overlap, truth.xyxy[t], dets.xyxy[d])
        hit = (overlap >= min_overlap) & (overlap > 0)
        if same_class:
            hit &= truth.label[t][:, None] == dets.label[d][None, :]
        r, c = np.nonzero(hit)
        found.append((t[r], d[c], overlap[r, c]))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    t_index, d_index, overlaps = (np.concatenate(column) for column in zip(*found, strict=True))
    return t_index, d_index, overlaps


def _area(xyxy: np.ndarray) -> np.ndarray:
    return (xyxy[:, 2] - xyxy[:, 0]).clip(0) * (xyxy[:, 3] - xyxy[:, 1]).clip(0)


def _inside_fraction(iou: np.ndarray, truth: np.ndarray, dets: np.ndarray) -> np.ndarray:
    """Intersection over the detection's area, from the IoU: with areas a and b,
    IoU = i / (a + b - i), so i = IoU (a + b) / (1 + IoU)."""
    a, b = _area(truth)[:, None], _area(dets)[None, :]
    inter = iou * (a + b) / (1 + iou)
    return np.divide(inter, b, out=np.zeros_like(inter), where=b > 0)


def one_to_one(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Greedy one-to-one matching of pairs listed best first: pair ``k`` (``first[k]``,
    ``second[k]``) is kept when neither of its members was taken by a better pair. Returns the
    mask of kept pairs.

    Vectorised by rounds: a pair that comes first among the remaining pairs of both its members
    is one greedy keeps (every better pair shares neither member), so each round keeps all of
    those at once and drops the pairs that lost a member to them."""
    keep = np.zeros(len(first), bool)
    alive = np.arange(len(first))
    while alive.size:
        _, first_a = np.unique(first[alive], return_index=True)
        _, first_b = np.unique(second[alive], return_index=True)
        won = alive[np.intersect1d(first_a, first_b, assume_unique=True)]
        keep[won] = True
        taken = np.isin(first[alive], first[won]) | np.isin(second[alive], second[won])
        alive = alive[~taken]
    return keep
