"""Anchors for your data: k-means on box shapes with ``1 - IoU`` as the distance.

YOLOv2 (Redmon & Farhadi, 2017, section "Dimension Clusters") chose its priors by k-means on the
training boxes' widths and heights with ``d(box, centroid) = 1 - IoU(box, centroid)``, the two
boxes' corners aligned, so that large boxes do not dominate as they would with a Euclidean
distance; YOLOv3 reused the method for its 9 anchors. Shapes are measured in pixels of the
letterboxed network input (``img_size`` square), where the anchors live.

Each cluster's centre moves to the *median* width and height of its boxes (k-medians): the mean
is not the IoU-optimal centre, and on real and COCO-like shape distributions the mean update
lowers the mean best IoU as it settles, where the median raises it (by 0.01 to 0.03 here).

Two figures judge any anchor set on a dataset: the *mean best IoU* (average over the boxes of
the IoU with the best-fitting anchor, the paper's "Avg IOU") and the *best possible recall*
(the share of boxes whose best anchor reaches IoU 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.boxes import MIN_SIZE
from yolov3.errors import ConfigError, DataError
from yolov3.fileio import atomic_write
from yolov3.images import letterbox_geometry
from yolov3.loss.assign import anchor_shape_iou
from yolov3.model.cfg import cfg_anchors, format_anchors, format_cfg, load_cfg, override_head

#: IoU at which a box counts as recalled by its best anchor.
RECALL_IOU = 0.5
#: k-means stops when the mean best IoU has not risen by ``_MIN_GAIN`` for this many steps.
_PATIENCE = 5
_MIN_GAIN = 1e-5
#: The restarts cluster a seeded sample of at most this many boxes; the best run is then
#: refined on all of them.
SAMPLE_BOXES = 20_000


@dataclass(frozen=True)
class AnchorQuality:
    """How well an anchor set fits a set of box shapes."""

    mean_iou: float  # mean over the boxes of the IoU with the best anchor ("Avg IOU")
    recall: float  # share of boxes whose best anchor has IoU >= RECALL_IOU
    num_boxes: int


def box_shapes(dataset: DetectionDataset, img_size: int = 416) -> np.ndarray:
    """(n, 2) float64 widths and heights of the dataset's training boxes in pixels of the
    ``img_size`` square letterboxed input (darknet's ``letterbox_image`` scale: the longer
    image side fitted to ``img_size``, the aspect kept; no augmentation). Ignored boxes (COCO
    crowd, VOC difficult) and boxes under one pixel at that scale are left out, as training
    leaves them out."""
    input_hw = (img_size, img_size)
    parts = []
    for i in range(len(dataset)):
        ann = dataset.annotations(i)
        placed = letterbox_geometry(ann.size, input_hw)[2]
        wh = (ann.boxes[:, 2:] - ann.boxes[:, :2]).astype(np.float64) * [placed.scale_x,
                                                                          placed.scale_y]
        parts.append(wh[~ann.ignore])
    shapes = np.concatenate([np.zeros((0, 2)), *parts])
    return shapes[(shapes >= MIN_SIZE).all(axis=1)]


def anchor_quality(shapes: np.ndarray, anchors: np.ndarray | Tensor) -> AnchorQuality:
    """Mean best IoU and best possible recall at IoU ``RECALL_IOU`` of ``anchors`` (K, 2) on
    box ``shapes`` (n, 2), both (w, h) in the same pixels, corners aligned."""
    best = anchor_shape_iou(
        torch.as_tensor(shapes, dtype=torch.float64),
        torch.as_tensor(anchors, dtype=torch.float64),
    ).amax(dim=1)
    if len(best) == 0:
        return AnchorQuality(0.0, 0.0, 0)
    return AnchorQuality(
        float(best.mean()), float((best >= RECALL_IOU).double().mean()), len(best)
    )


def _kmeans_plus_plus(shapes: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii) with the 1 - IoU distance: each next centre
    is a box drawn with probability proportional to its squared distance to the nearest centre
    so far. With at least ``k`` distinct shapes the centres are distinct."""
    first = torch.randint(len(shapes), (1,), generator=gen)
    centres = shapes[first]
    nearest = 1 - anchor_shape_iou(shapes, centres)[:, 0]
    for _ in range(k - 1):
        pick = torch.multinomial(nearest.clamp(min=0) ** 2, 1, generator=gen)
        centres = torch.cat([centres, shapes[pick]])
        nearest = torch.minimum(nearest, 1 - anchor_shape_iou(shapes, shapes[pick])[:, 0])
    return centres


def _cluster_medians(shapes: Tensor, members: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(k, 2) the per-cluster median width and height (the lower median for even counts) and
    (k,) the cluster sizes; an empty cluster's row is meaningless."""
    counts = torch.bincount(members, minlength=k)
    middle = (torch.cumsum(counts, 0) - counts + (counts - 1).clamp(min=0) // 2)
    middle = middle.clamp(max=len(shapes) - 1)
    columns = []
    for values in shapes.unbind(1):  # width, then height
        by_value = torch.argsort(values)
        by_cluster = by_value[torch.sort(members[by_value], stable=True).indices]
        columns.append(values[by_cluster][middle])
    return torch.stack(columns, dim=1), counts


def _lloyd(shapes: Tensor, centres: Tensor, max_iter: int) -> tuple[Tensor, float]:
    """Lloyd's iterations: every box joins the centre of highest IoU, every centre moves to
    the median shape of its boxes (a centre that loses all its boxes stays), until no box
    changes cluster or the mean best IoU has not risen for ``_PATIENCE`` iterations. Returns
    the centres of the highest mean best IoU seen, and that figure."""
    k = len(centres)
    best, best_iou, since_best = centres, -1.0, 0
    members = None
    for _ in range(max_iter):
        iou, assigned = anchor_shape_iou(shapes, centres).max(dim=1)
        mean_iou = float(iou.mean())
        if mean_iou > best_iou + _MIN_GAIN:
            since_best = 0
        since_best += 1
        if mean_iou > best_iou:
            best, best_iou = centres, mean_iou
        if (members is not None and torch.equal(assigned, members)) or since_best > _PATIENCE:
            break
        members = assigned
        medians, counts = _cluster_medians(shapes, members, k)
        centres = torch.where(counts[:, None] > 0, medians, centres)
    return best, best_iou


def kmeans_anchors(
    shapes: np.ndarray,
    num_anchors: int = 9,
    restarts: int = 10,
    seed: int = 0,
    max_iter: int = 100,
    source: str = "the boxes",
) -> np.ndarray:
    """YOLOv2's dimension clusters: ``num_anchors`` (w, h) centres of the box ``shapes``
    (n, 2) by k-means with the distance ``1 - IoU`` (corners aligned, median update), seeded
    by k-means++; the best of ``restarts`` runs by mean best IoU. With more than
    ``SAMPLE_BOXES`` boxes the restarts run on a seeded sample and the best is refined on all.

    Returns (K, 2) float64 sorted by area, the order darknet's masks expect (small anchors for
    the fine grid). The same ``seed`` gives the same anchors. ``source`` names the data in the
    error raised when it holds fewer distinct shapes than anchors."""
    if num_anchors < 1:
        raise ConfigError(f"the number of anchors must be at least 1, got {num_anchors}")
    shapes = np.asarray(shapes, np.float64).reshape(-1, 2)
    distinct = len(np.unique(shapes, axis=0))
    if distinct < num_anchors:
        raise DataError(
            f"{source}: has {distinct} distinct box shape{'s' * (distinct != 1)} "
            f"({len(shapes)} boxes), fewer than the {num_anchors} anchors asked for; "
            "ask for fewer anchors or use more labelled data"
        )
    data = torch.from_numpy(shapes)
    gen = torch.Generator().manual_seed(seed)
    sample = data
    if len(data) > SAMPLE_BOXES:
        sample = data[torch.randperm(len(data), generator=gen)[:SAMPLE_BOXES]]
    runs = [_lloyd(sample, _kmeans_plus_plus(sample, num_anchors, gen), max_iter)
            for _ in range(max(restarts, 1))]
    centres = max(runs, key=lambda run: run[1])[0]
    if sample is not data:
        centres = _lloyd(data, centres, max_iter)[0]
    centres = centres.numpy()
    return centres[np.argsort(centres.prod(axis=1), kind="stable")]


def round_anchors(anchors: np.ndarray) -> np.ndarray:
    """Anchors rounded to whole pixels (at least 1), as darknet cfgs write them."""
    return np.maximum(np.round(anchors), 1.0)


def fit_anchors(
    dataset: DetectionDataset,
    num_anchors: int = 9,
    img_size: int = 416,
    seed: int = 0,
    restarts: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Anchors for ``dataset`` at input size ``img_size``: (K, 2) whole-pixel (w, h) sorted by
    area, and the (n, 2) box shapes they were fitted to (see :func:`box_shapes`)."""
    shapes = box_shapes(dataset, img_size)
    centres = kmeans_anchors(shapes, num_anchors, restarts, seed, source=str(dataset.source))
    return round_anchors(centres), shapes


def fit_anchors_for_training(
    dataset: DetectionDataset, num_anchors: int, img_size: int, seed: int
) -> list[tuple[float, float]]:
    """``train --anchors auto``: the anchors of :func:`fit_anchors` as the ``anchors`` argument
    of :func:`yolov3.build_model`. Deterministic for a given dataset, size and seed."""
    anchors, _ = fit_anchors(dataset, num_anchors, img_size, seed)
    return [(float(w), float(h)) for w, h in anchors]


def anchors_cfg_line(anchors: np.ndarray) -> str:
    """The anchors in darknet cfg syntax: ``anchors = 10,13,  16,30,  ...``."""
    return "anchors = " + format_anchors(np.asarray(anchors).tolist())


def write_anchor_cfg(
    cfg: str | Path,
    anchors: np.ndarray,
    path: str | Path,
    num_classes: int | None = None,
) -> Path:
    """Write ``cfg`` (a built-in name or a file) with ``anchors`` in every ``[yolo]`` section
    (and ``num_classes`` when given) to ``path``. The cfg's masks index its anchors, so the
    new set must have as many anchors as the old one."""
    sections = load_cfg(cfg)
    expected = len(cfg_anchors(sections))
    if len(anchors) != expected:
        raise ConfigError(
            f"{sections[0].source}: has {expected} anchors (its [yolo] masks index them), "
            f"but {len(anchors)} were fitted; fit {expected}"
        )
    pairs = [(float(w), float(h)) for w, h in np.asarray(anchors)]
    text = format_cfg(override_head(sections, num_classes, pairs))
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return Path(path)
