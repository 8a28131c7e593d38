"""Target assignment: which anchor of which YOLO layer learns each ground truth, and from what.

Darknet's ``forward_yolo_layer`` (Part 2 of the blog series), vectorised over the batch, the
ground truths and the anchors:

1. Each ground truth (GT) picks the best of all K anchors by *shape IoU* (the two boxes' corners
   aligned). A YOLO layer learns the GT only when that anchor is in its ``mask``; with the 2018
   yolov3-tiny cfg (masks ``3,4,5`` and ``1,2,3``) anchor 3 is learned by both layers and
   anchor 0 by none, exactly as in darknet.
2. The anchor at cell ``i = floor(xc * f_w)``, ``j = floor(yc * f_h)`` gets the offsets
   ``tx = xc * f_w - i``, ``ty = yc * f_h - j``, the log-space sizes
   ``tw = log(w * W / anchor_w + 1e-16)`` (``th`` likewise; the encoding of
   :class:`~yolov3.model.box_coder.BoxCoder`), objectness 1, its class one-hot and the box-size
   weight ``scale = 2 - w * h``. When several GTs land on one (anchor, cell), the
   last one's box targets win and the class one-hots accumulate.
3. :func:`ignore_mask`: predictions whose best IoU with any GT of their image exceeds the layer's
   ``ignore_thresh`` get no objectness loss (unless step 2 assigned them).

Step 1 is darknet's rule, :class:`AssignRule` ``best``. The improved recipes may instead make
every anchor responsible whose shape IoU with the GT exceeds a threshold (``iou``, the rule of
ultralytics' YOLOv3 archive) or whose width and height are both within a factor of the GT's
(``ratio``, their later rule), the best anchor always among them, so a GT can be learned by
several anchors and layers; steps 2 to 4 are unchanged.

Ground truths are ``class, xc, yc, w, h`` normalised to the (padded) network input of size
``input_hw = (H, W)``; the input may be non-square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou

from yolov3.errors import DataError, choice_problem, raise_problems
from yolov3.model.box_coder import BoxCoder
from yolov3.model.layers import YOLOLayer

# Pairwise IoU per image: (B, N, 4) x (B, M, 4) -> (B, N, M). vmap keeps torchvision < 0.24,
# whose box_iou takes 2-D inputs only, working.
_batched_box_iou = torch.vmap(box_iou)


#: The anchor rules of :class:`AssignRule`.
ASSIGN_RULES = ("best", "iou", "ratio")


@dataclass(frozen=True)
class AssignRule:
    """Which anchors learn a ground truth (step 1 of the module docstring).

    - ``best`` (darknet): the one anchor of the K with the highest shape IoU;
    - ``iou``: every anchor whose shape IoU with the GT exceeds ``threshold`` (e.g. 0.2);
    - ``ratio``: every anchor whose width and height are both within a factor ``threshold``
      (e.g. 4) of the GT's.

    The best anchor is always responsible, so no GT goes unlearned.
    """

    rule: str = "best"
    threshold: float = 0.0

    def __post_init__(self) -> None:
        """Checked as the ``loss.assign`` and ``loss.assign_threshold`` config keys."""
        problems = choice_problem("loss.assign", self.rule, ASSIGN_RULES)
        if self.rule == "iou" and not 0 < self.threshold < 1:
            problems.append("loss.assign_threshold is the shape IoU above which an anchor "
                            f"learns a GT with loss.assign: iou, in (0, 1); got {self.threshold}")
        if self.rule == "ratio" and not self.threshold > 1:
            problems.append("loss.assign_threshold is the largest width or height ratio of an "
                            f"anchor to a GT with loss.assign: ratio, > 1; got {self.threshold}")
        raise_problems(problems)

    def responsible(self, gt_wh: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor]:
        """(M, K) True where anchor k learns GT m, and the (M, K) shape IoUs; ``gt_wh`` (M, 2)
        and ``anchors`` (K, 2) in the same units."""
        iou = anchor_shape_iou(gt_wh, anchors)
        best = iou.argmax(dim=1)  # first maximum on ties, as darknet's strict '>' scan
        chosen = torch.zeros_like(iou, dtype=torch.bool)
        chosen[torch.arange(len(iou), device=iou.device), best] = True
        if self.rule == "iou":
            chosen |= iou > self.threshold
        elif self.rule == "ratio":
            ratio = gt_wh[:, None, :] / anchors.to(gt_wh)[None, :, :]
            worst = torch.maximum(ratio, 1 / ratio).amax(dim=2)
            chosen |= worst < self.threshold
        return chosen, iou


#: Darknet's rule.
BEST_ANCHOR = AssignRule()


@dataclass(frozen=True)
class Matches:
    """One row per (ground truth, responsible anchor of a YOLO layer), ordered by ground truth.

    With darknet's rule and the built-in yolov3 and yolov3-spp cfgs every GT has exactly one
    row, so row ``r`` is GT ``r`` of the concatenated targets. ``kept`` is False where a later
    GT on the same (anchor, cell) replaced this one's box targets (its class still counts).
    """

    gt: Tensor  # (R,) index into the batch's targets, concatenated in image order
    image: Tensor  # (R,) image index in the batch
    layer: Tensor  # (R,) index into ``model.yolo_layers``
    anchor: Tensor  # (R,) anchor index among all K anchors of the cfg
    layer_anchor: Tensor  # (R,) index among the layer's anchors (position in its mask)
    anchor_iou: Tensor  # (R,) shape IoU of the GT with that anchor (darknet: the best of all K)
    cell_i: Tensor  # (R,) grid column
    cell_j: Tensor  # (R,) grid row
    tx: Tensor  # (R,) x offset of the centre in the cell, the target of sigmoid(tx)
    ty: Tensor  # (R,)
    tw: Tensor  # (R,) log(w * W / anchor_w), the target of the raw tw
    th: Tensor  # (R,)
    scale: Tensor  # (R,) 2 - w * h, darknet's weight of the box terms
    cls: Tensor  # (R,) class index
    kept: Tensor  # (R,) bool


@dataclass(frozen=True)
class LayerTargets:
    """What one YOLO layer learns on a batch. The anchor cells responsible for a GT are listed
    once each (``cells``, sorted by image, anchor, row, column) with their targets, and marked on
    the grid by ``assigned``, the objectness target."""

    assigned: Tensor  # (B, A, h, w) bool: objectness target 1 there, 0 elsewhere
    cells: Tensor  # (n, 4) long: image, layer anchor, row j, column i
    box: Tensor  # (n, 4) tx, ty, tw, th of the cell's last GT
    scale: Tensor  # (n,) 2 - w * h of the cell's last GT
    cls: Tensor  # (n, C) union of the one-hot classes of every GT assigned to the cell
    anchor_wh: Tensor  # (n, 2) the cell's anchor (input pixels), the unit of exp(tw), exp(th)


@dataclass(frozen=True)
class Assignment:
    """The targets of a batch: per (GT, layer) :class:`Matches` and per-layer
    :class:`LayerTargets` in the order of ``model.yolo_layers``."""

    matches: Matches
    layers: list[LayerTargets]


def concat_targets(targets: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """The batch's targets as one (M, 5) float32 tensor on ``device`` and the (M,) image index
    of each row. Each element of ``targets`` is (n_i, 5) ``class, xc, yc, w, h`` (n_i may be 0)."""
    for k, t in enumerate(targets):
        if t.numel() and (t.ndim != 2 or t.shape[1] != 5):
            raise DataError(
                f"targets[{k}]: expected shape (n, 5) of class, xc, yc, w, h; "
                f"got {tuple(t.shape)}"
            )
    rows = [t.reshape(-1, 5).to(device=device, dtype=torch.float32) for t in targets]
    counts = torch.tensor([len(r) for r in rows], device=device)
    image = torch.repeat_interleave(torch.arange(len(rows), device=device), counts)
    gt = torch.cat(rows) if rows else torch.zeros(0, 5, device=device)
    return gt, image


def anchor_shape_iou(gt_wh: Tensor, anchors: Tensor) -> Tensor:
    """(M, K) IoU of each GT's (w, h) with each anchor's (w, h), corners aligned (darknet's
    ``box_iou`` of the truth and the anchor both shifted to the origin). Same units for both."""
    origin = gt_wh.new_zeros(1, 2)
    gt_boxes = torch.cat([origin.expand(len(gt_wh), 2), gt_wh], dim=1)
    anchor_boxes = torch.cat([origin.expand(len(anchors), 2), anchors.to(gt_wh)], dim=1)
    return box_iou(gt_boxes, anchor_boxes)


def assign_targets(
    layers: Sequence[YOLOLayer],
    grid_hw: Sequence[tuple[int, int]],
    targets: Sequence[Tensor],
    input_hw: tuple[int, int],
    rule: AssignRule = BEST_ANCHOR,
) -> Assignment:
    """Darknet's target assignment (steps 1, 2 and 4 of the module docstring) for a batch.

    ``layers`` are the model's YOLO layers, ``grid_hw`` their (h, w) grid sizes at this input,
    ``targets`` one (n_i, 5) tensor per image, ``input_hw`` the network input (H, W), ``rule``
    which anchors learn a GT (darknet's: the best).
    """
    device = layers[0].anchors.device
    gt, image = concat_targets(targets, device)
    num_classes = layers[0].num_classes
    cls = gt[:, 0].long()
    bad = (cls < 0) | (cls >= num_classes) | (gt[:, 0] != cls)
    if bad.any():
        k = int(bad.nonzero()[0, 0])
        raise DataError(
            f"targets[{int(image[k])}]: class {gt[k, 0].item():g} is not an integer in "
            f"0..{num_classes - 1}"
        )
    in_h, in_w = input_hw
    gt_px = gt[:, 1:5] * gt.new_tensor([in_w, in_h, in_w, in_h])  # cx, cy, w, h input pixels
    rows, per_layer = [], []
    for index, (layer, hw) in enumerate(zip(layers, grid_hw, strict=True)):
        rows_l, targets_l = _assign_layer(
            layer, index, BoxCoder.of(input_hw, hw), len(targets), gt, gt_px, cls, image, rule
        )
        rows.append(rows_l)
        per_layer.append(targets_l)
    columns = {name: torch.cat([r[name] for r in rows]) for name in rows[0]}
    order = torch.sort(columns["gt"], stable=True).indices
    return Assignment(Matches(**{k: v[order] for k, v in columns.items()}), per_layer)


def _assign_layer(
    layer: YOLOLayer,
    index: int,
    coder: BoxCoder,
    batch: int,
    gt: Tensor,
    gt_px: Tensor,
    cls: Tensor,
    image: Tensor,
    rule: AssignRule,
) -> tuple[dict[str, Tensor], LayerTargets]:
    """The :class:`Matches` columns and the :class:`LayerTargets` of one YOLO layer, whose
    grid ``coder`` encodes the GTs ``gt_px`` (cx, cy, w, h input pixels of the rows of ``gt``)."""
    device, num_anchors = gt.device, layer.num_anchors
    fh, fw = coder.grid_hw
    anchors = layer.anchors.to(gt)
    chosen, iou = rule.responsible(gt_px[:, 2:4], anchors)
    mask = torch.tensor(layer.mask, device=device)
    # The (GT, layer anchor) pairs this layer learns, in GT order (darknet's rule: one per GT).
    g, a = chosen[:, mask].nonzero(as_tuple=True)
    b, c, anchor = image[g], cls[g], mask[a]
    cell, box = coder.encode(gt_px[g], anchors[anchor])
    i, j = cell.unbind(1)
    scale = 2 - gt[g, 3] * gt[g, 4]

    # One row per distinct (image, anchor, j, i); the last GT on a cell provides its box.
    key = ((b * num_anchors + a) * fh + j) * fw + i
    cell_key, slot_of_gt = torch.unique(key, return_inverse=True)
    last = torch.full((len(cell_key),), -1, dtype=torch.long, device=device)
    last.scatter_reduce_(0, slot_of_gt, torch.arange(len(g), device=device), "amax")
    kept = torch.zeros(len(g), dtype=torch.bool, device=device)
    kept[last] = True
    one_hot = torch.zeros(len(cell_key), layer.num_classes, device=device)
    one_hot[slot_of_gt, c] = 1.0
    assigned = torch.zeros(batch * num_anchors * fh * fw, dtype=torch.bool, device=device)
    assigned[cell_key] = True
    targets = LayerTargets(
        assigned=assigned.view(batch, num_anchors, fh, fw),
        cells=torch.stack([b, a, j, i], dim=1)[last],
        box=box[last],
        scale=scale[last],
        cls=one_hot,
        anchor_wh=anchors[anchor][last],
    )
    columns = {
        "gt": g, "image": b, "layer": torch.full_like(g, index), "anchor": anchor,
        "layer_anchor": a, "anchor_iou": iou[g, anchor], "cell_i": i, "cell_j": j,
        "tx": box[:, 0], "ty": box[:, 1], "tw": box[:, 2], "th": box[:, 3], "scale": scale,
        "cls": c, "kept": kept,
    }
    return columns, targets


def padded_gt_boxes(
    targets: Sequence[Tensor], input_hw: tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """The GT boxes of each image as (B, M_max, 4) x1, y1, x2, y2 in input pixels, zero-padded,
    and the (B, M_max) mask of real rows."""
    gt, image = concat_targets(targets, device)
    counts = torch.bincount(image, minlength=len(targets))
    width = int(counts.max()) if len(gt) else 0
    # Position of each GT within its image: its row index minus the image's first row.
    first = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(gt), device=device) - first[image]
    in_h, in_w = input_hw
    scale = gt.new_tensor([in_w, in_h, in_w, in_h])
    boxes = gt.new_zeros(len(targets), width, 4)
    boxes[image, pos] = box_convert(gt[:, 1:5] * scale, "cxcywh", "xyxy")
    valid = torch.zeros(len(targets), width, dtype=torch.bool, device=device)
    valid[image, pos] = True
    return boxes, valid


def ignore_mask(
    layer: YOLOLayer,
    raw: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    input_hw: tuple[int, int],
) -> Tensor:
    """Darknet's ignore rule: (B, A, h, w) True where the predicted box decoded from ``raw``
    (B, A, h, w, 5+C) has a best IoU above ``layer.ignore_thresh`` with any GT of its image.

    ``gt_boxes`` and ``gt_valid`` come from :func:`padded_gt_boxes`. The loss skips objectness on
    these predictions unless they are assigned a GT.
    """
    shape = raw.shape[:4]
    if gt_boxes.shape[1] == 0:
        return torch.zeros(shape, dtype=torch.bool, device=raw.device)
    with torch.no_grad():
        pred = layer.decode(raw[..., :5].detach().float(), input_hw)[..., :4]
        pred = box_convert(pred.reshape(shape[0], -1, 4), "cxcywh", "xyxy")
        iou = _batched_box_iou(pred, gt_boxes).masked_fill_(~gt_valid[:, None, :], 0.0)
        return (iou.amax(dim=2) > layer.ignore_thresh).view(shape)
