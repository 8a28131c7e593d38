"""Which anchor of which YOLO layer learns each ground truth, drawn from the training code.

:func:`explain_assignment` runs the very steps of a training iteration on one image: the
training data transform (:class:`~yolov3.inputs.augment.TrainTransform`) with its random steps
switched off, so that the image is letterboxed and centred, the model's raw outputs,
:func:`yolov3.loss.assign_targets` (the assignment the loss uses) and
:func:`yolov3.loss.ignore_mask` (the cells whose objectness loss the ignore threshold skips).
:func:`draw_assignment` draws the result, one panel per YOLO layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from torch import Tensor
from torchvision.ops import box_convert

from yolov3.datasets.sample import Sample
from yolov3.explain.figure import new_figure
from yolov3.inference.draw import class_colour
from yolov3.inputs.augment import TrainTransform
from yolov3.loss import Assignment, assign_targets, ignore_mask, padded_gt_boxes
from yolov3.model.cfg import as_hw
from yolov3.model.network import YOLOv3

_CELL = (1.0, 0.85, 0.0)  # the responsible cell
_IGNORED = (0.0, 0.65, 1.0)  # cells whose objectness loss is skipped
#: The training transform without its random steps: no jitter, centred, no colour change or flip.
PLAIN_TRAIN_TRANSFORM = TrainTransform(
    jitter=0.0, random_placing=False, hue=0.0, saturation=1.0, exposure=1.0, flip=0.0
)


@dataclass(frozen=True)
class AssignLabel:
    """One (ground truth, YOLO layer that learns it) row of the assignment, as labelled."""

    gt: int  # index into the view's targets
    layer: int  # index into model.yolo_layers
    anchor: int  # index among all the cfg's anchors
    layer_anchor: int  # index among the layer's anchors (position in its mask)
    cell_i: int  # grid column
    cell_j: int  # grid row
    iou: float  # shape IoU with the anchor, the best of all anchors
    kept: bool  # False where a later GT on the same cell replaced the box targets

    @property
    def text(self) -> str:
        """The label drawn beside the ground truth."""
        return (f"L{self.layer} a{self.anchor} IoU {self.iou:.2f}"
                + ("" if self.kept else " (replaced)"))


@dataclass(frozen=True)
class AssignmentView:
    """The targets of one image as the training code makes them."""

    image: np.ndarray  # (H, W, 3) uint8: the letterboxed network input
    targets: Tensor  # (n, 5) class, xc, yc, w, h normalised to the input: the training targets
    assignment: Assignment  # assign_targets' output for the targets
    ignored: list[Tensor]  # per YOLO layer (A, h, w) bool: ignored and not assigned
    strides: list[int]  # per YOLO layer, input pixels per cell
    masks: list[list[int]]  # per YOLO layer, its anchors among all of the cfg's
    anchors: Tensor  # (K, 2) all of the cfg's anchors, input pixels
    ignore_thresh: list[float]  # per YOLO layer

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def labels(self) -> list[AssignLabel]:
        """One label per row of ``assignment.matches``, in its order."""
        m = self.assignment.matches
        columns = (m.gt, m.layer, m.anchor, m.layer_anchor, m.cell_i, m.cell_j, m.anchor_iou,
                   m.kept)
        return [AssignLabel(*row) for row in zip(*(c.tolist() for c in columns), strict=True)]

    @property
    def unlearned(self) -> list[int]:
        """Ground truths that no YOLO layer learns (their best anchor is in no mask)."""
        learned = torch.zeros(len(self.targets), dtype=torch.bool)
        learned[self.assignment.matches.gt.cpu()] = True
        return (~learned).nonzero().flatten().tolist()

    def boxes_xyxy(self) -> Tensor:
        """(n, 4) the targets' boxes as x1, y1, x2, y2 input pixels."""
        h, w = self.input_hw
        scale = self.targets.new_tensor([w, h, w, h])
        return box_convert(self.targets[:, 1:5] * scale, "cxcywh", "xyxy")


def explain_assignment(
    model: YOLOv3, sample: Sample, img_size: int | tuple[int, int]
) -> AssignmentView:
    """The training targets of ``sample`` at an ``img_size`` input (one side of a square, or
    (height, width)): the boxes placed by
    :data:`PLAIN_TRAIN_TRANSFORM` (letterboxed, ignored and sub-pixel boxes dropped), assigned by
    :func:`~yolov3.loss.assign_targets`, and the cells that :func:`~yolov3.loss.ignore_mask`
    masks given ``model``'s predictions (used as it is: put it in eval mode for batch-norm
    running statistics)."""
    input_hw = as_hw(img_size)
    image, targets = PLAIN_TRAIN_TRANSFORM(sample, input_hw, np.random.default_rng(0))
    device = model.anchors.device
    with torch.no_grad():
        raw = model(image[None].to(device))
    layers = model.yolo_layers
    grid_hw = [(r.shape[2], r.shape[3]) for r in raw]
    assignment = assign_targets(layers, grid_hw, [targets], input_hw)
    gt_boxes, gt_valid = padded_gt_boxes([targets], input_hw, device)
    ignored = [
        (ignore_mask(layer, r, gt_boxes, gt_valid, input_hw) & ~t.assigned)[0].cpu()
        for layer, r, t in zip(layers, raw, assignment.layers, strict=True)
    ]
    pixels = image.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    return AssignmentView(
        image=pixels,
        targets=targets,
        assignment=assignment,
        ignored=ignored,
        strides=[input_hw[0] // h for h, _ in grid_hw],
        masks=[list(layer.mask) for layer in layers],
        anchors=model.anchors.cpu(),
        ignore_thresh=[layer.ignore_thresh for layer in layers],
    )


def _draw_grid(ax: Axes, input_hw: tuple[int, int], stride: int) -> None:
    h, w = input_hw
    ax.vlines(np.arange(0, w + 1, stride), 0, h, colors="white", linewidths=0.4, alpha=0.5)
    ax.hlines(np.arange(0, h + 1, stride), 0, w, colors="white", linewidths=0.4, alpha=0.5)


def _draw_layer(ax: Axes, view: AssignmentView, layer: int, names: Sequence[str]) -> None:
    """One panel: the input, the layer's grid and ignored cells, every ground truth, and for
    those the layer learns the responsible cell, the anchor prior there and the label."""
    h, w = view.input_hw
    stride = view.strides[layer]
    ignored = view.ignored[layer]
    ax.imshow(view.image, extent=(0, w, h, 0))
    shade = np.zeros((*ignored.shape[1:], 4))
    shade[..., :3] = _IGNORED
    share = ignored.float().mean(dim=0).numpy()
    shade[..., 3] = np.where(share > 0, 0.3 + 0.4 * share, 0.0)
    ax.imshow(shade, extent=(0, w, h, 0), interpolation="nearest")
    _draw_grid(ax, view.input_hw, stride)
    boxes = view.boxes_xyxy().tolist()
    classes = view.targets[:, 0].long().tolist()
    labels = [lab for lab in view.labels if lab.layer == layer]
    learned_here = {lab.gt for lab in labels}
    for g, (x1, y1, x2, y2) in enumerate(boxes):
        if g not in learned_here:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="0.85",
                                   linestyle=":", linewidth=1.2))
    for lab in labels:
        x1, y1, x2, y2 = boxes[lab.gt]
        colour = np.array(class_colour(classes[lab.gt])) / 255
        ax.add_patch(Rectangle((lab.cell_i * stride, lab.cell_j * stride), stride, stride,
                               facecolor=(*_CELL, 0.55), edgecolor=_CELL, linewidth=1.0))
        aw, ah = view.anchors[lab.anchor].tolist()
        cx, cy = (lab.cell_i + 0.5) * stride, (lab.cell_j + 0.5) * stride
        ax.add_patch(Rectangle((cx - aw / 2, cy - ah / 2), aw, ah, fill=False,
                               edgecolor=_CELL, linestyle="--", linewidth=1.3))
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=2.0))
        name = names[classes[lab.gt]] if classes[lab.gt] < len(names) else str(classes[lab.gt])
        ax.text(x1 + 2, y1 + 2, f"{name}: {lab.text}", fontsize="small", color="black",
                va="top", clip_on=True, bbox={"facecolor": colour, "edgecolor": "none",
                                              "pad": 1.5, "alpha": 0.9})
    fh, fw = ignored.shape[1:]
    ax.set_title(
        f"YOLO layer {layer}: stride {stride}, {fw}×{fh} cells, anchors "
        f"{','.join(map(str, view.masks[layer]))}\n{len(learned_here)} learned here, "
        f"{int(ignored.any(dim=0).sum())} cells ignored (IoU > {view.ignore_thresh[layer]:g})",
        fontsize="medium",
    )
    ax.set(xlim=(0, w), ylim=(h, 0))
    ax.set_axis_off()


def draw_assignment(
    view: AssignmentView, names: Sequence[str], size: int = 600, title: str = ""
) -> Figure:
    """A ``(number of YOLO layers) * size`` x ``size`` pixel figure, one panel per YOLO layer:
    the network input with the layer's grid; each ground truth the layer learns with its
    responsible cell (filled), the chosen anchor's shape centred on that cell (dashed) and the
    label ``L<layer> a<anchor> IoU <shape IoU>``; ground truths other layers learn (dotted); and
    in blue the cells whose objectness loss the ignore threshold skips (the more of the cell's
    anchors are ignored, the stronger)."""
    layers = len(view.strides)
    fig = new_figure(layers * size, size, size)
    axes = fig.subplots(1, layers, squeeze=False)[0]
    for layer, ax in enumerate(axes):
        _draw_layer(ax, view, layer, names)
    unlearned = view.unlearned
    note = f"; {len(unlearned)} ground truths no layer learns" if unlearned else ""
    fig.suptitle(f"{title}{note}" if title or note else "Target assignment")
    fig.legend(
        handles=[
            Patch(facecolor=(*_CELL, 0.55), edgecolor=_CELL, label="responsible cell"),
            Line2D([], [], color=_CELL, linestyle="--", label="anchor prior at that cell"),
            Line2D([], [], color="0.6", linestyle=":", label="learned by another layer"),
            Patch(facecolor=(*_IGNORED, 0.6), label="ignored cells (no objectness loss)"),
        ],
        loc="outside lower center", ncol=4, fontsize="small", frameon=False,
    )
    return fig
