"""The loss against darknet's formulas written naively, its gradients against darknet's delta."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import pytest
import skimage
import torch

import yolov3
from yolov3 import build_model
from yolov3.images import letterbox, load_image
from yolov3.loss import PARTS, assign_targets, ignore_mask, padded_gt_boxes, yolo_loss

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(p: float, t: float) -> float:
    """Binary cross-entropy of a probability, the sigmoid-then-log form."""
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def iou_cxcywh(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2))
    ih = max(0.0, min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def reference(layers, raw_outputs, targets, input_hw):
    """Darknet's ``forward_yolo_layer``, one loop per thing: the loss parts and, per part, the
    gradient with respect to each raw output (darknet's delta with a gradient's sign)."""
    in_h, in_w = input_hw
    parts = dict.fromkeys(PARTS, 0.0)
    grads = {n: [torch.zeros(r.shape, dtype=torch.float64) for r in raw_outputs] for n in PARTS}
    for n, (layer, raw) in enumerate(zip(layers, raw_outputs, strict=True)):
        out = raw.tolist()
        batch, num_anchors, fh, fw, channels = raw.shape
        anchors = layer.anchors.tolist()
        # Responsible cells: the last GT's box targets, every GT's class.
        cells = {}
        for b in range(batch):
            for c, xc, yc, w, h in targets[b].tolist():
                ious = []
                for aw, ah in anchors:
                    inter = min(w * in_w, aw) * min(h * in_h, ah)
                    ious.append(inter / (w * in_w * h * in_h + aw * ah - inter))
                best = ious.index(max(ious))
                if best not in layer.mask:
                    continue
                a = layer.mask.index(best)
                i, j = min(int(xc * fw), fw - 1), min(int(yc * fh), fh - 1)
                box = (xc * fw - i, yc * fh - j,
                       math.log(w * in_w / anchors[best][0]), math.log(h * in_h / anchors[best][1]))
                classes = cells.get((b, a, j, i), (None, None, set()))[2] | {int(c)}
                cells[b, a, j, i] = (box, 2 - w * h, classes)
        for b, a, j, i in itertools.product(range(batch), range(num_anchors), range(fh), range(fw)):
            p = out[b][a][j][i]
            g = {name: grads[name][n][b, a, j, i] for name in PARTS}
            s_obj = sigmoid(p[4])
            if (b, a, j, i) in cells:
                box, scale, classes = cells[b, a, j, i]
                for k in (0, 1):
                    parts["xy"] += scale * bce(sigmoid(p[k]), box[k])
                    g["xy"][k] = scale * (sigmoid(p[k]) - box[k])
                for k in (2, 3):
                    parts["wh"] += 0.5 * scale * (p[k] - box[k]) ** 2
                    g["wh"][k] = scale * (p[k] - box[k])
                for c in range(channels - 5):
                    t = float(c in classes)
                    parts["cls"] += bce(sigmoid(p[5 + c]), t)
                    g["cls"][5 + c] = sigmoid(p[5 + c]) - t
                parts["obj"] += bce(s_obj, 1.0)
                g["obj"][4] = s_obj - 1.0
                continue
            aw, ah = anchors[layer.mask[a]]
            pred = ((sigmoid(p[0]) + i) * in_w / fw, (sigmoid(p[1]) + j) * in_h / fh,
                    math.exp(p[2]) * aw, math.exp(p[3]) * ah)
            truths = [(xc * in_w, yc * in_h, w * in_w, h * in_h)
                      for _, xc, yc, w, h in targets[b].tolist()]
            if max((iou_cxcywh(pred, t) for t in truths), default=0.0) > layer.ignore_thresh:
                continue
            parts["obj"] += bce(s_obj, 0.0)
            g["obj"][4] = s_obj
    return parts, grads


def check_against_reference(model, raw_outputs, targets, input_hw):
    raws = [r.detach().clone().requires_grad_(True) for r in raw_outputs]
    total, parts = yolo_loss(model.yolo_layers, raws, targets, input_hw)
    ref_parts, ref_grads = reference(model.yolo_layers, raws, targets, input_hw)
    for name in PARTS:
        assert parts[name].item() == pytest.approx(ref_parts[name], rel=1e-5, abs=1e-6), name
        grads = torch.autograd.grad(parts[name], raws, retain_graph=True, allow_unused=True)
        for grad, ref in zip(grads, ref_grads[name], strict=True):
            grad = torch.zeros_like(ref) if grad is None else grad.double()
            torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5, msg=name)
    assert total.item() == pytest.approx(sum(ref_parts.values()), rel=1e-5)
    return parts


@pytest.fixture(scope="module")
def photo_batch():
    """Letterboxed scikit-image photos with hand-placed boxes (coffee: the cup, a small box;
    motorcycle: the motorbike, two boxes in one cell; astronaut; chelsea: no box), plus a box of
    anchor 0's shape (learned by no yolov3-tiny layer) and one of anchor 3's (learned by both)."""
    names = ["coffee.png", "motorcycle_left.png", "astronaut.png", "chelsea.png"]
    images = torch.stack([letterbox(load_image(SKIMAGE_DATA / n), (416, 416))[0] for n in names])
    targets = [
        [[41, 0.482, 0.442, 0.461, 0.472], [0, 0.10, 0.10, 0.05, 0.08],
         [5, 0.9, 0.1, 10 / 416, 14 / 416]],
        [[3, 0.508, 0.508, 0.874, 0.539], [0, 0.30, 0.80, 0.10, 0.12],
         [2, 0.305, 0.805, 0.11, 0.12]],
        [[0, 0.5, 0.55, 0.8, 0.9], [7, 0.7, 0.3, 80 / 416, 80 / 416]],
        [],
    ]
    return images, [torch.tensor(t, dtype=torch.float32).reshape(-1, 5) for t in targets]


@pytest.fixture(scope="module")
def tiny():
    return yolov3.from_darknet("yolov3-tiny", "yolov3-tiny")


def test_real_weights_loss_equals_naive_darknet(tiny, photo_batch):
    images, targets = photo_batch
    with torch.no_grad():
        raw = tiny(images)
    parts = check_against_reference(tiny, raw, targets, (416, 416))
    assert parts["obj"] > 0 and parts["cls"] > 0
    # The case exercises the ignore rule: trained predictions overlap the hand-placed boxes.
    gt_boxes, gt_valid = padded_gt_boxes(targets, (416, 416), torch.device("cpu"))
    assignment = assign_targets(tiny.yolo_layers, [r.shape[2:4] for r in raw], targets, (416, 416))
    ignored = sum(
        int((ignore_mask(layer, r, gt_boxes, gt_valid, (416, 416)) & ~t.assigned).sum())
        for layer, r, t in zip(tiny.yolo_layers, raw, assignment.layers, strict=True)
    )
    assert ignored > 0


def test_loss_takes_the_yolo_layers_and_the_forward_output(tiny, photo_batch):
    """The objective needs the YOLO layers and ``model(images)``, whatever the network's mode:
    forward gives the raw predictions in eval mode too, and the loss's gradient reaches every
    parameter."""
    model = copy.deepcopy(tiny).eval()
    images, targets = photo_batch[0][:1], photo_batch[1][:1]
    raw = model(images)
    assert [r.shape for r in raw] == [(1, 3, 13, 13, 85), (1, 3, 26, 26, 85)]
    total, parts = yolo_loss(model.yolo_layers, raw, targets, (416, 416))
    assert set(parts) == set(PARTS) == {"xy", "wh", "obj", "cls"}
    assert total.item() == pytest.approx(sum(p.item() for p in parts.values()), rel=1e-6)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp", "yolov3-tiny"])
def test_every_architecture_matches_naive_darknet(name):
    # Random logits of each architecture's grid shapes at a non-square 96 x 160 input. (Centres
    # stay off cell borders, where float32, as in darknet, and the float64 reference may differ.)
    model = build_model(name)
    input_hw = (96, 160)
    gen = torch.Generator().manual_seed(0)
    raw = [torch.randn(2, layer.num_anchors, 96 // s, 160 // s, 85, generator=gen)
           for layer, s in zip(model.yolo_layers, (32, 16, 8), strict=False)]
    targets = [
        torch.tensor([[1, 0.33, 0.43, 0.2, 0.3], [2, 0.72, 0.62, 0.9, 0.8],
                      [3, 0.5, 0.5, 0.05, 0.1], [4, 0.52, 0.52, 0.06, 0.1],
                      [9, 0.12, 0.9, 0.3, 0.1]]),
        torch.tensor([[5, 0.5, 0.5, 30 / 160, 61 / 96]]),
    ]
    check_against_reference(model, raw, targets, input_hw)


def test_no_boxes_leaves_only_background_objectness():
    model = build_model("yolov3-tiny")
    raw = [torch.randn(2, 3, 13, 13, 85), torch.randn(2, 3, 26, 26, 85)]
    empty = [torch.zeros(0, 5), torch.zeros(0, 5)]
    total, parts = yolo_loss(model.yolo_layers, raw, empty, (416, 416))
    assert parts["xy"] == 0 and parts["wh"] == 0 and parts["cls"] == 0
    expected = sum(torch.nn.functional.softplus(r[..., 4]).sum() for r in raw)
    assert parts["obj"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_objectness_gradient_ignored_assigned_and_background():
    # yolov3's stride-16 layer, a 60 x 60 px GT centred in cell (12, 10): its best anchor is
    # 62x45 (layer anchor 1). Predictions at that cell: layer anchor 0 at IoU 0.83 (ignored: no
    # objectness gradient), anchor 2 at IoU 0.64 (background: gradient sigmoid(to)), anchor 1
    # at IoU 0.91 (assigned, so trained towards 1 despite the overlap).
    model = build_model("yolov3")
    s = 416
    target = torch.tensor([[0, 10.5 * 16 / s, 12.5 * 16 / s, 60 / s, 60 / s]])
    raw = [torch.zeros(1, 3, g, g, 85) for g in (13, 26, 52)]
    for r in raw:
        r[..., 2:4] = -10.0  # every other prediction is a speck
    anchors = model.yolo_layers[1].layer_anchors
    for a, side in ((0, 66.0), (1, 63.0), (2, 75.0)):
        raw[1][0, a, 12, 10, 2:4] = torch.log(side / anchors[a])
    raw[1][..., 4] = 0.3
    raw = [r.requires_grad_(True) for r in raw]
    _, parts = yolo_loss(model.yolo_layers, raw, [target], (s, s))
    grad = torch.autograd.grad(parts["obj"], raw[1])[0][0, :, 12, 10, 4]
    p = sigmoid(0.3)
    assert grad.tolist() == pytest.approx([0.0, p - 1.0, p], abs=1e-6)


def test_extreme_logits_stay_finite():
    model = build_model("yolov3-tiny")
    raw = [torch.full((1, 3, 13, 13, 85), 60.0), torch.full((1, 3, 26, 26, 85), -60.0)]
    raw = [r.requires_grad_(True) for r in raw]
    target = [torch.tensor([[0, 0.5, 0.5, 0.3, 0.3], [1, 0.2, 0.2, 0.05, 0.05]])]
    total, parts = yolo_loss(model.yolo_layers, raw, target, (416, 416))
    total.backward()
    assert math.isfinite(total.item())
    assert all(torch.isfinite(r.grad).all() for r in raw)
    # Background objectness at logit 60 costs 60 per anchor (BCE from logits, no clamping).
    assert parts["obj"].item() > 60 * (3 * 13 * 13 - 1)
