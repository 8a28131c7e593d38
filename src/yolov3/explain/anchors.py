"""The picture of an anchor set: the anchors at their true size in the network input, and the
dataset's box shapes around them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from yolov3.anchors import anchor_quality
from yolov3.explain.figure import new_figure
from yolov3.loss.assign import anchor_shape_iou
from yolov3.model.cfg import Section, layer_strides

#: Box shapes drawn at most in the scatter (a seeded sample of them beyond this).
MAX_POINTS = 4000
_LAYER_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def yolo_strides(sections: Sequence[Section]) -> list[int]:
    """The stride (input pixels per grid cell) of each ``[yolo]`` layer of a parsed cfg."""
    return [round(s) for s, sec in zip(layer_strides(sections), sections[1:], strict=True)
            if sec.type == "yolo"]


def anchor_layers(sections: Sequence[Section], num_anchors: int) -> list[list[str]]:
    """For each anchor, the YOLO layers of the cfg whose mask holds it, as ``stride N``: the
    layers that learn the boxes it fits best."""
    yolo = [s for s in sections if s.type == "yolo"]
    masks = [s.get_ints("mask", list(range(num_anchors))) for s in yolo]
    strides = yolo_strides(sections)
    return [[f"stride {stride}" for mask, stride in zip(masks, strides, strict=True) if k in mask]
            for k in range(num_anchors)]


def draw_anchors(
    anchors: np.ndarray,
    shapes: np.ndarray,
    img_size: int,
    size: int = 600,
    sections: Sequence[Section] | None = None,
    reference: np.ndarray | None = None,
    reference_name: str = "COCO",
    seed: int = 0,
) -> Figure:
    """A ``2 * size`` x ``size`` pixel figure. Left: ``anchors`` (K, 2) drawn at their true size
    in the ``img_size`` square input, centred, coloured by the YOLO layer of the cfg
    ``sections`` that learns them. Right: the box ``shapes`` (n, 2), coloured by their best
    anchor, with the anchors and the ``reference`` set marked, and the mean best IoU and best
    possible recall (IoU >= 0.5) of both in the title."""
    anchors = np.asarray(anchors, np.float64)
    fig = new_figure(2 * size, size, size)
    left, right = fig.subplots(1, 2)
    layers = anchor_layers(sections, len(anchors)) if sections else [[] for _ in anchors]
    names = sorted({n for owners in layers for n in owners}, key=lambda n: -int(n.split()[1]))
    centre = img_size / 2
    left.set_facecolor("0.93")
    for k, ((w, h), owners) in enumerate(zip(anchors, layers, strict=True)):
        colour = _LAYER_COLOURS[names.index(owners[0]) % len(_LAYER_COLOURS)] if owners else "0.4"
        where = f" ({', '.join(owners) or 'no layer'})" if sections else ""
        left.add_patch(Rectangle(
            (centre - w / 2, centre - h / 2), w, h, fill=False, edgecolor=colour, linewidth=1.6,
            label=f"{k}: {w:g}×{h:g}{where}",
        ))
    left.set(xlim=(0, img_size), ylim=(img_size, 0), aspect="equal",
             title=f"{len(anchors)} anchors at true size in the {img_size}×{img_size} input")
    left.set_xticks(np.arange(0, img_size + 1, 32), minor=True)
    left.set_yticks(np.arange(0, img_size + 1, 32), minor=True)
    left.grid(which="minor", color="white", linewidth=0.6)
    fig.legend(handles=left.patches, loc="outside lower center", ncol=min(len(anchors), 5),
               fontsize="small", frameon=False, title="anchor k: width×height (input px)",
               title_fontsize="small")

    shown = shapes
    if len(shapes) > MAX_POINTS:
        shown = shapes[np.random.default_rng(seed).choice(len(shapes), MAX_POINTS, False)]
    best = anchor_shape_iou(torch.from_numpy(shown), torch.from_numpy(anchors)).argmax(dim=1)
    right.scatter(shown[:, 0], shown[:, 1], c=best.numpy() % 10, cmap="tab10", s=8, alpha=0.7,
                  vmin=0, vmax=9, linewidths=0)
    fitted = anchor_quality(shapes, anchors)
    title = f"fitted: mean IoU {fitted.mean_iou:.3f}, recall {fitted.recall:.3f}"
    right.scatter(anchors[:, 0], anchors[:, 1], marker="X", s=90, c="black", label="fitted")
    if reference is not None:
        ref = anchor_quality(shapes, reference)
        title += f"\n{reference_name}: mean IoU {ref.mean_iou:.3f}, recall {ref.recall:.3f}"
        right.scatter(reference[:, 0], reference[:, 1], marker="s", s=60, facecolors="none",
                      edgecolors="crimson", linewidths=1.5, label=reference_name)
    right.set(xlabel=f"width of the {len(shapes)} boxes (input px)",
              ylabel="box height (input px)", title=title,
              xlim=(0, img_size), ylim=(0, img_size), aspect="equal")
    right.legend(loc="upper left", fontsize="small")
    return fig
