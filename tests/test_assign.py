"""Target assignment on hand-checked cases: anchors, layers, cells, offsets, sizes, ignore."""

from __future__ import annotations

import math

import pytest
import torch

from yolov3 import build_model
from yolov3.errors import DataError
from yolov3.loss import anchor_shape_iou, assign_targets, ignore_mask, padded_gt_boxes

S = 416  # square network input used by most cases


@pytest.fixture(scope="module")
def yolo_layers():
    """yolov3's three YOLO layers: masks 6,7,8 (stride 32), 3,4,5 (16), 0,1,2 (8)."""
    return build_model("yolov3").yolo_layers


@pytest.fixture(scope="module")
def tiny_layers():
    """yolov3-tiny (2018 cfg) YOLO layers: masks 3,4,5 (stride 32) and 1,2,3 (stride 16)."""
    return build_model("yolov3-tiny").yolo_layers


def grids(layers, input_hw):
    h, w = input_hw
    return [(h // s, w // s) for s in (32, 16, 8)[: len(layers)]]


def assign(layers, targets, input_hw=(S, S)):
    boxes = [torch.tensor(t, dtype=torch.float32).reshape(-1, 5) for t in targets]
    return assign_targets(layers, grids(layers, input_hw), boxes, input_hw)


def test_shape_iou_by_hand():
    # A 0.3 x 0.4 box of 416 is 124.8 x 166.4 pixels.
    iou = anchor_shape_iou(torch.tensor([[124.8, 166.4]]), torch.tensor([[116.0, 90], [156, 198]]))
    gt_area = 124.8 * 166.4
    expected = [116 * 90 / gt_area, gt_area / (156 * 198)]  # 0.5027, 0.6723
    assert iou[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_one_box_lands_on_its_best_anchor_only(yolo_layers):
    # Shape IoU 0.6723 with 156x198 beats 0.5027 with 116x90 (and the rest): anchor 7, which is
    # the second anchor of the stride-32 layer (mask 6,7,8).
    a = assign(yolo_layers, [[[3, 0.55, 0.27, 0.3, 0.4]]])
    m = a.matches
    assert len(m.gt) == 1
    assert (m.layer.item(), m.anchor.item(), m.layer_anchor.item()) == (0, 7, 1)
    assert m.anchor_iou.item() == pytest.approx(124.8 * 166.4 / (156 * 198), rel=1e-6)
    assert (m.cell_i.item(), m.cell_j.item()) == (7, 3)  # 0.55 * 13 = 7.15, 0.27 * 13 = 3.51
    assert m.tx.item() == pytest.approx(0.15, abs=1e-5)
    assert m.ty.item() == pytest.approx(0.51, abs=1e-5)
    assert m.tw.item() == pytest.approx(math.log(124.8 / 156), abs=1e-6)
    assert m.th.item() == pytest.approx(math.log(166.4 / 198), abs=1e-6)
    assert m.scale.item() == pytest.approx(2 - 0.3 * 0.4)
    assert m.kept.item()

    first, *others = a.layers
    assert first.assigned.sum() == 1 and first.assigned[0, 1, 3, 7]
    assert first.cells.tolist() == [[0, 1, 3, 7]]
    assert torch.equal(first.box[0], torch.cat([m.tx, m.ty, m.tw, m.th]))
    assert first.cls[0].nonzero().flatten().tolist() == [3]
    assert first.cls.shape == (1, 80)
    assert all(t.assigned.sum() == 0 and len(t.cells) == 0 for t in others)


def test_non_square_input_uses_each_axis(yolo_layers):
    # At H=320, W=416 the box is 124.8 x 128 pixels: 116x90 now wins (0.6535 vs 0.5172).
    a = assign(yolo_layers, [[[0, 0.55, 0.27, 0.3, 0.4]]], input_hw=(320, 416))
    m = a.matches
    assert (m.layer.item(), m.anchor.item(), m.layer_anchor.item()) == (0, 6, 0)
    assert (m.cell_i.item(), m.cell_j.item()) == (7, 2)  # 0.55 * 13 = 7.15, 0.27 * 10 = 2.7
    assert m.ty.item() == pytest.approx(0.7, abs=1e-5)
    assert m.tw.item() == pytest.approx(math.log(124.8 / 116), abs=1e-6)
    assert m.th.item() == pytest.approx(math.log(128 / 90), abs=1e-6)
    assert a.layers[0].assigned.shape == (1, 3, 10, 13)


def test_box_on_cell_borders(yolo_layers):
    # Exactly anchor 0's shape (10 x 13 px): stride-8 layer, 52 x 52 cells.
    w, h = 10 / S, 13 / S
    a = assign(yolo_layers, [[[1, 0.25, 0.5, w, h], [2, 1.0, 0.0, w, h]]])
    m = a.matches
    assert m.layer.tolist() == [2, 2] and m.anchor.tolist() == [0, 0]
    assert m.anchor_iou.tolist() == pytest.approx([1.0, 1.0])
    # 0.25 * 52 = 13 exactly: the border belongs to the cell on its right, offset 0.
    assert (m.cell_i[0].item(), m.cell_j[0].item()) == (13, 26)
    assert (m.tx[0].item(), m.ty[0].item()) == (0.0, 0.0)
    assert m.tw[0].item() == pytest.approx(0.0, abs=1e-6)
    # A centre on the right edge stays in the last column, with offset 1.
    assert (m.cell_i[1].item(), m.cell_j[1].item()) == (51, 0)
    assert (m.tx[1].item(), m.ty[1].item()) == (1.0, 0.0)
    assert a.layers[2].assigned.sum() == 2


def test_two_boxes_in_one_cell(yolo_layers):
    # Same anchor and cell: the second box's targets win and both classes are learned. A third
    # box in the same cell with another best anchor (59x119) gets its own row.
    boxes = [
        [2, 0.51, 0.51, 60 / S, 44 / S],
        [5, 0.52, 0.52, 64 / S, 46 / S],
        [7, 0.515, 0.515, 59 / S, 119 / S],
    ]
    a = assign(yolo_layers, [boxes, boxes[:1]])
    m = a.matches
    assert m.gt.tolist() == [0, 1, 2, 3]
    assert m.anchor.tolist() == [4, 4, 5, 4]
    assert m.kept.tolist() == [False, True, True, True]
    layer = a.layers[1]  # stride 16: 0.51..0.52 * 26 -> cell 13
    assert layer.cells.tolist() == [[0, 1, 13, 13], [0, 2, 13, 13], [1, 1, 13, 13]]
    assert layer.assigned.sum() == 3
    assert layer.box[0, 0].item() == pytest.approx(0.52 * 26 - 13, abs=1e-5)
    assert layer.box[0, 2].item() == pytest.approx(math.log(64 / 62), abs=1e-6)
    assert layer.scale[0].item() == pytest.approx(2 - 64 * 46 / S**2)
    assert layer.cls.nonzero().tolist() == [[0, 2], [0, 5], [1, 7], [2, 2]]


def test_tiny_masks_learn_anchor_3_twice_and_anchor_0_never(tiny_layers):
    # The 2018 yolov3-tiny cfg: masks 3,4,5 and 1,2,3, so anchor 3 (81x82) is in both layers
    # and anchor 0 (10x14) in none, as darknet trained the released weights.
    a = assign(tiny_layers, [[[4, 0.5, 0.5, 81 / S, 82 / S], [6, 0.2, 0.2, 10 / S, 14 / S]]])
    m = a.matches
    assert m.gt.tolist() == [0, 0]
    assert m.layer.tolist() == [0, 1] and m.anchor.tolist() == [3, 3]
    assert m.layer_anchor.tolist() == [0, 2]
    assert [t.assigned.sum().item() for t in a.layers] == [1, 1]
    assert a.layers[0].assigned[0, 0, 6, 6] and a.layers[1].assigned[0, 2, 13, 13]


def test_images_without_boxes(yolo_layers):
    a = assign(yolo_layers, [[], [[0, 0.5, 0.5, 0.1, 0.1]], []])
    assert a.matches.image.tolist() == [1]
    assert [tuple(t.assigned.shape) for t in a.layers] == [(3, 3, 13, 13), (3, 3, 26, 26),
                                                           (3, 3, 52, 52)]
    none = assign(yolo_layers, [[], []])
    assert len(none.matches.gt) == 0 and all(len(t.cells) == 0 for t in none.layers)


def test_bad_targets_are_named(yolo_layers):
    with pytest.raises(DataError, match=r"targets\[1\]: class 80"):
        assign(yolo_layers, [[[0, 0.5, 0.5, 0.1, 0.1]], [[80, 0.5, 0.5, 0.1, 0.1]]])
    with pytest.raises(DataError, match=r"targets\[0\]: expected shape"):
        assign_targets(yolo_layers, grids(yolo_layers, (S, S)), [torch.zeros(2, 4)], (S, S))


def raw_predicting(layer, batch, grid, boxes):
    """Raw outputs whose decoded boxes are ``{(b, a, j, i): (w_px, h_px)}`` centred in their
    cells, and a few pixels wide everywhere else."""
    raw = torch.zeros(batch, layer.num_anchors, grid, grid, 5 + layer.num_classes)
    raw[..., 2:4] = -10.0
    anchors = layer.layer_anchors
    for (b, a, j, i), (w, h) in boxes.items():
        raw[b, a, j, i, 2] = math.log(w / anchors[a, 0])
        raw[b, a, j, i, 3] = math.log(h / anchors[a, 1])
    return raw


def test_ignore_above_threshold_only(yolo_layers):
    # A 60 x 60 px GT centred in cell (j=12, i=10) of the stride-16 layer (anchors 30x61, 62x45,
    # 59x119). Concentric squares of side 60k have IoU 1/k^2 with it: k=1.1 -> 0.83 > 0.7 is
    # ignored, k=1.25 -> 0.64 is not. Image 1 has no GT, so nothing there is ignored.
    layer = yolo_layers[1]
    centre_x, centre_y = 10.5 * 16 / S, 12.5 * 16 / S
    targets = [torch.tensor([[0, centre_x, centre_y, 60 / S, 60 / S]]), torch.zeros(0, 5)]
    sides = {(0, 0, 12, 10): 66.0, (0, 2, 12, 10): 75.0, (1, 0, 12, 10): 66.0}
    raw = raw_predicting(layer, 2, 26, {k: (v, v) for k, v in sides.items()})
    gt_boxes, gt_valid = padded_gt_boxes(targets, (S, S), torch.device("cpu"))
    ignored = ignore_mask(layer, raw, gt_boxes, gt_valid, (S, S))
    assert ignored.nonzero().tolist() == [[0, 0, 12, 10]]


def test_a_lower_ignore_threshold_ignores_the_nearer_misses_too():
    # The case above with every [yolo] ignore_thresh at 0.5 (loss.ignore_thresh): the k=1.25
    # square (IoU 0.64) is ignored too; k=2 (IoU 0.25) is not.
    layer = build_model("yolov3", ignore_thresh=0.5).yolo_layers[1]
    assert layer.ignore_thresh == 0.5
    centre_x, centre_y = 10.5 * 16 / S, 12.5 * 16 / S
    targets = [torch.tensor([[0, centre_x, centre_y, 60 / S, 60 / S]])]
    sides = {(0, 0, 12, 10): 66.0, (0, 2, 12, 10): 75.0, (0, 1, 12, 10): 120.0}
    raw = raw_predicting(layer, 1, 26, {k: (v, v) for k, v in sides.items()})
    gt_boxes, gt_valid = padded_gt_boxes(targets, (S, S), torch.device("cpu"))
    ignored = ignore_mask(layer, raw, gt_boxes, gt_valid, (S, S))
    assert ignored.nonzero().tolist() == [[0, 0, 12, 10], [0, 2, 12, 10]]


def test_padded_gt_boxes():
    targets = [torch.tensor([[0, 0.5, 0.5, 0.5, 0.25], [1, 0.25, 0.25, 0.5, 0.5]]),
               torch.zeros(0, 5), torch.tensor([[2, 0.5, 0.5, 1.0, 1.0]])]
    boxes, valid = padded_gt_boxes(targets, (200, 400), torch.device("cpu"))
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    assert boxes[0].tolist() == [[100, 75, 300, 125], [0, 0, 200, 100]]
    assert boxes[2, 0].tolist() == [0, 0, 400, 200]
