"""Darknet's box coder of a YOLO layer on values: decoding of known raw outputs, the targets of
known boxes, the round trips, and agreement with darknet's formula and the YOLO layer output of
a micro network, with the targets the assignment makes."""

from __future__ import annotations

import math

import torch

from conftest import MICRO_CFG
from yolov3 import build_model
from yolov3.loss import assign_targets
from yolov3.model import BoxCoder
from yolov3.model.cfg import parse_cfg_text

# A (4, 4) grid over a 64 x 128 input: 16 pixels per cell down, 32 across.
CODER = BoxCoder.of((64, 128), (4, 4))
ANCHOR = torch.tensor([10.0, 14.0])


def test_the_stride_and_the_grid() -> None:
    assert CODER.stride == (16.0, 32.0)
    grid = CODER.grid()
    assert grid.shape == (4, 4, 2)
    assert grid[1, 3].tolist() == [3.0, 1.0]  # column c_x, row c_y
    assert grid[..., 0].tolist() == [[0.0, 1.0, 2.0, 3.0]] * 4


def test_decode_of_known_raw_outputs() -> None:
    # sigmoid(0) = 0.5, sigmoid(log 3) = 0.75; exp(log 2) = 2, exp(0) = 1.
    raw = torch.tensor([0.0, math.log(3), math.log(2), 0.0])
    box = CODER.decode(raw, ANCHOR, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(box, torch.tensor([(0.5 + 2) * 32, (0.75 + 1) * 16, 20.0, 14.0]))
    # From the cell's corner (what the IoU losses take), and with tw clamped.
    corner = CODER.decode(torch.tensor([0.0, 0.0, 20.0, -1.0]), ANCHOR, 0.0, max_log_size=8.0)
    torch.testing.assert_close(corner, torch.tensor(
        [16.0, 8.0, 10 * math.exp(8.0), 14 * math.exp(-1.0)]))


def test_decode_of_a_whole_grid_puts_each_box_in_its_cell() -> None:
    raw = torch.zeros(2, 4, 4, 4)  # two anchors, centres in the middle of their cells
    anchors = torch.tensor([[10.0, 14.0], [30.0, 40.0]]).view(2, 1, 1, 2)
    boxes = CODER.decode(raw, anchors, CODER.grid())
    assert boxes.shape == (2, 4, 4, 4)
    assert boxes[1, 2, 3].tolist() == [3.5 * 32, 2.5 * 16, 30.0, 40.0]
    assert boxes[0, 0, 0].tolist() == [16.0, 8.0, 10.0, 14.0]


def test_encode_of_known_boxes() -> None:
    boxes = torch.tensor([[80.0, 28.0, 20.0, 14.0],  # cell (2, 1): offsets 0.5, 0.75
                          [128.0, 64.0, 5.0, 7.0],  # on the far edges: the last cell, offset 1
                          [0.0, 0.0, 10.0, 14.0]])  # on the near edges: the first cell
    cells, targets = CODER.encode(boxes, ANCHOR)
    assert cells.dtype == torch.long
    assert cells.tolist() == [[2, 1], [3, 3], [0, 0]]
    torch.testing.assert_close(targets, torch.tensor([
        [0.5, 0.75, math.log(2), 0.0],
        [1.0, 1.0, math.log(0.5), math.log(0.5)],
        [0.0, 0.0, 0.0, 0.0],
    ]))


def test_the_round_trips() -> None:
    g = torch.Generator().manual_seed(0)
    raw = (torch.randn(500, 4, generator=g, dtype=torch.float64) * 2).clamp(-5, 5)
    cells = torch.randint(0, 4, (500, 2), generator=g).double()
    anchors = torch.rand(500, 2, generator=g, dtype=torch.float64) * 100 + 5
    boxes = CODER.decode(raw, anchors, cells)
    found, targets = CODER.encode(boxes, anchors)
    # encode(decode(raw)) is the raw output with its offsets through the sigmoid...
    assert torch.equal(found.double(), cells)
    expected = torch.cat([torch.sigmoid(raw[:, :2]), raw[:, 2:]], dim=1)
    torch.testing.assert_close(targets, expected, rtol=0, atol=1e-12)
    # ... and decoding the targets gives the boxes back.
    torch.testing.assert_close(CODER.decode_targets(targets, anchors, found), boxes,
                               rtol=1e-12, atol=1e-12)


def darknet_box(raw: list[float], i: int, j: int, anchor: list[float], grid_hw, input_hw):
    """Darknet's ``get_yolo_box`` (fractions of the input), in input pixels."""
    (lh, lw), (h, w) = grid_hw, input_hw
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    return [(i + sig(raw[0])) / lw * w, (j + sig(raw[1])) / lh * h,
            math.exp(raw[2]) * anchor[0], math.exp(raw[3]) * anchor[1]]


def test_agrees_with_darknet_and_the_yolo_layers_of_a_micro_network() -> None:
    torch.manual_seed(0)
    model = build_model(parse_cfg_text(MICRO_CFG, "micro.cfg")).eval()
    input_hw = (64, 96)
    with torch.no_grad():
        raws = model(torch.rand(2, 3, *input_hw))
        decoded = model.decode(raws, input_hw)
    start = 0
    for layer, raw in zip(model.yolo_layers, raws, strict=True):
        _, num_anchors, h, w, _ = raw.shape
        coder = BoxCoder.of(input_hw, (h, w))
        anchors = layer.layer_anchors.view(1, -1, 1, 1, 2)
        boxes = coder.decode(raw[..., :4], anchors, coder.grid())
        rows = decoded[:, start:start + boxes[0].numel() // 4]
        start += boxes[0].numel() // 4
        assert torch.equal(rows[..., :4], boxes.flatten(1, 3))
        assert torch.equal(layer.decode(raw, input_hw)[..., :4], boxes)
        for b, a, j, i in ((0, 0, 0, 0), (1, num_anchors - 1, h - 1, w - 1), (1, 1, h // 2, 1)):
            expected = darknet_box(raw[b, a, j, i].tolist(), i, j,
                                   layer.layer_anchors[a].tolist(), (h, w), input_hw)
            torch.testing.assert_close(boxes[b, a, j, i], torch.tensor(expected))
    assert start == decoded.shape[1]


def test_the_assignments_targets_decode_to_the_ground_truths() -> None:
    model = build_model(parse_cfg_text(MICRO_CFG, "micro.cfg"))
    input_hw = (64, 96)
    targets = [torch.tensor([[0, 0.3, 0.6, 0.5, 0.7], [1, 0.9, 0.1, 0.05, 0.1]]),
               torch.tensor([[2, 0.55, 0.45, 0.2, 0.3]])]
    grids = [(input_hw[0] // s, input_hw[1] // s) for s in (32, 16)]
    assignment = assign_targets(model.yolo_layers, grids, targets, input_hw)
    m = assignment.matches
    assert len(m.gt) == 3
    gt = torch.cat(targets)[m.gt, 1:5] * torch.tensor([96.0, 64.0, 96.0, 64.0])
    for r in range(len(m.gt)):
        coder = BoxCoder.of(input_hw, grids[int(m.layer[r])])
        box = torch.stack([m.tx[r], m.ty[r], m.tw[r], m.th[r]])
        cell = torch.stack([m.cell_i[r], m.cell_j[r]])
        anchor = model.anchors[m.anchor[r]]
        torch.testing.assert_close(coder.decode_targets(box, anchor, cell), gt[r])
        assert torch.equal(coder.encode(gt[r], anchor)[0], cell)
