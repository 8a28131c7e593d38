"""The explain pictures: the assignment picture shows the training code's own targets, the channel
view holds the model's output, and each command writes a PNG of its stated size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import yolov3
from yolov3.cli.main import main
from yolov3.datasets.sample import Sample
from yolov3.explain import draw_assignment, draw_channels, explain_assignment, explain_channels
from yolov3.images import letterbox, load_image
from yolov3.inputs.augment import TrainTransform
from yolov3.loss import assign_targets, ignore_mask, padded_gt_boxes
from yolov3.model import Decoded

S = 416


@pytest.fixture(scope="module")
def motorbike_sample(photos) -> Sample:
    """motorcycle_left (741x500) with boxes that exercise every branch: the motorbike (where the
    trained model's predictions overlap it, so cells are ignored), an 81x82-pixel box in the
    input (exactly anchor 3, which both tiny layers learn), a box shaped like anchor 0 (which
    no tiny layer learns), two boxes on one cell with one anchor (the second replaces the
    first's box targets), a "difficult" box and one under a pixel (neither is a target)."""
    image = load_image(photos["motorcycle_left"])
    r = image.shape[1] / S  # image pixels per input pixel (the letterbox scale is 416 / 741)
    boxes = np.array([
        [92, 15, 684, 451],  # the motorbike, annotated by hand (tests/data_factory.py)
        [300, 200, 300 + 81 * r, 200 + 82 * r],
        [100, 300, 100 + 10 * r, 300 + 14 * r],
        [380, 90, 380 + 30 * r, 90 + 40 * r],
        [381, 91, 381 + 31 * r, 91 + 41 * r],
        [10, 10, 200, 200],
        [500, 400, 500.5, 420],
    ], np.float32)
    labels = np.array([3, 0, 1, 2, 5, 7, 9])
    ignore = np.array([False, False, False, False, False, True, False])
    return Sample(image, boxes, labels, 1, "motorcycle_left.png", ignore)


def test_assignment_labels_are_the_training_targets(tiny, motorbike_sample):
    view = explain_assignment(tiny, motorbike_sample, S)

    # The training transform with its random steps off, then the loss's own assignment.
    plain = TrainTransform(jitter=0, random_placing=False, hue=0, saturation=1, exposure=1,
                           flip=0)
    image, targets = plain(motorbike_sample, (S, S), np.random.default_rng(123))
    assert torch.equal(view.targets, targets)
    assert len(targets) == 5  # the difficult and the sub-pixel boxes are no targets
    with torch.no_grad():
        raw = tiny(image[None])
    grid_hw = [(r.shape[2], r.shape[3]) for r in raw]
    reference = assign_targets(tiny.yolo_layers, grid_hw, [targets], (S, S)).matches

    labels = view.labels
    assert [lab.gt for lab in labels] == reference.gt.tolist()
    assert [lab.layer for lab in labels] == reference.layer.tolist()
    assert [lab.anchor for lab in labels] == reference.anchor.tolist()
    assert [lab.layer_anchor for lab in labels] == reference.layer_anchor.tolist()
    assert [lab.cell_i for lab in labels] == reference.cell_i.tolist()
    assert [lab.cell_j for lab in labels] == reference.cell_j.tolist()
    assert [lab.iou for lab in labels] == reference.anchor_iou.tolist()
    assert [lab.kept for lab in labels] == reference.kept.tolist()

    # What the cases promise, read from the labels.
    exact = [lab for lab in labels if lab.gt == 1]
    assert [(lab.layer, lab.anchor) for lab in exact] == [(0, 3), (1, 3)]
    assert all(lab.iou == pytest.approx(1.0, abs=0.02) for lab in exact)
    assert view.unlearned == [2]
    assert [lab.kept for lab in labels if lab.gt in (3, 4)] == [False, True]

    # The ignored cells are ignore_mask's, less the assigned ones; the motorbike has some.
    gt_boxes, gt_valid = padded_gt_boxes([targets], (S, S), torch.device("cpu"))
    layer_targets = assign_targets(tiny.yolo_layers, grid_hw, [targets], (S, S)).layers
    for layer, r, t, shown in zip(tiny.yolo_layers, raw, layer_targets, view.ignored,
                                  strict=True):
        expected = ignore_mask(layer, r, gt_boxes, gt_valid, (S, S)) & ~t.assigned
        assert torch.equal(shown, expected[0])
    assert view.ignored[0].sum() > 0

    # The picture's labels are these, one per (ground truth, layer).
    fig = draw_assignment(view, ["c"] * 80, size=300)
    drawn = sorted(t.get_text() for ax in fig.axes for t in ax.texts)
    replaced = dict(zip(reference.gt.tolist(), reference.kept.tolist(), strict=True))
    expected = sorted(
        f"c: L{layer} a{anchor} IoU {iou:.2f}" + ("" if replaced[g] else " (replaced)")
        for g, layer, anchor, iou in zip(reference.gt.tolist(), reference.layer.tolist(),
                                         reference.anchor.tolist(),
                                         reference.anchor_iou.tolist(), strict=True)
    )
    assert drawn == expected


def opencv_peak(weights: Path, x: torch.Tensor) -> dict:
    """OpenCV DNN's most confident row of yolov3-tiny's first YOLO layer (13 x 13 at 416,
    anchors 3, 4, 5 of the cfg: ``mask = 3,4,5``) for the input ``x``: (anchor of the layer,
    row j, column i), objectness and best class. OpenCV orders each layer's rows (y, x, anchor)."""
    import cv2

    from yolov3.model.cfg import builtin_cfg_path

    net = cv2.dnn.readNetFromDarknet(str(builtin_cfg_path("yolov3-tiny")), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x[None].numpy())
    first = net.forward(net.getUnconnectedOutLayersNames())[0]
    assert first.shape[0] == 13 * 13 * 3
    k = int(first[:, 4].argmax())
    cell, anchor = divmod(k, 3)
    return {"cell": (anchor, *divmod(cell, 13)), "objectness": float(first[k, 4]),
            "class": int(first[k, 5:].argmax()), "anchor": 3 + anchor}


def test_channel_view_is_the_model_output(tiny, tiny_weights, photos):
    image = load_image(photos["coffee"])
    view = explain_channels(tiny, image, S, layer=0)
    x, _ = letterbox(image, (S, S))
    with torch.no_grad():
        rows = Decoded(tiny)(x[None])[0]  # decoded rows, layer 0 first, ordered (anchor, y, x)
    assert torch.allclose(view.decoded.reshape(-1, 85), rows[: 3 * 13 * 13], atol=1e-5)
    assert torch.allclose(view.objectness, torch.sigmoid(view.raw[..., 4]), rtol=1e-6, atol=0)
    # The layer's most confident prediction, its objectness and best class are OpenCV DNN's
    # (another implementation of darknet's network) on the same input: the cup, COCO class 41.
    a, j, i = view.peak()
    peak = opencv_peak(tiny_weights, x)
    assert (a, j, i) == peak["cell"]
    assert view.objectness[a, j, i] == pytest.approx(peak["objectness"], abs=1e-4)
    assert int(view.decoded[a, j, i, 5:].argmax()) == peak["class"] == 41
    fig = draw_channels(view, [f"class{k}" for k in range(80)], size=300)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("best: class41" in t for t in texts)
    assert "anchor 3 (81×82): channels 0–84" in texts
    with pytest.raises(yolov3.YoloError, match=r"--layer 2: the model has YOLO layers 0\.\.1"):
        explain_channels(tiny, image, S, layer=2)


def png_size(path: Path) -> tuple[int, int]:
    assert path.stat().st_size > 1000
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return picture.size


def test_explain_channels_command(tiny_weights, photos, tmp_path, capsys):
    out = tmp_path / "coffee.png"
    code = main(["explain", "channels", str(photos["coffee"]), "--model", "yolov3-tiny",
                 "--size", "300", "--out", str(out)])
    assert code == 0
    assert png_size(out) == (3 * 300, 300 + 150)
    # the cell and anchor OpenCV DNN finds most confident on the same 416 x 416 input
    peak = opencv_peak(tiny_weights, letterbox(load_image(photos["coffee"]), (S, S))[0])
    _, j, i = peak["cell"]
    assert f"most confident: anchor {peak['anchor']} at cell ({i}, {j})" in \
        capsys.readouterr().out


def test_explain_assign_command_with_a_label_file(photos, tmp_path, capsys):
    labels = tmp_path / "motorcycle_left.txt"
    labels.write_text("3 0.5 0.55 0.8 0.7\n")
    out = tmp_path / "assign.png"
    code = main(["explain", "assign", str(photos["motorcycle_left"]), "--boxes", str(labels),
                 "--model", "yolov3-tiny", "--size", "300", "--out", str(out)])
    assert code == 0
    assert png_size(out) == (2 * 300, 300)
    printed = capsys.readouterr().out
    # By hand: 741 x 500 letterboxed to 416 (scale 416 / 741), the box is 0.8 x 741 x 0.561 =
    # 332.8 by 0.7 x 500 x 0.561 = 196.5 input pixels; its IoU (centred) with anchor 5,
    # 344 x 319, is 65,395 / 109,736 = 0.60, with anchor 4 (135 x 169) 0.35, the others less.
    assert "motorbike [" in printed and "layer 0 (stride 32), anchor 5 (344x319)" in printed


def test_explain_assign_command_on_a_dataset(kangaroo_dir, tmp_path, capsys):
    out = tmp_path / "k.png"
    code = main(["explain", "assign", "00006.jpg", "--data", str(kangaroo_dir), "--split", "all",
                 "--model", "yolov3-tiny", "--weights", "none", "--size", "300", "--out",
                 str(out)])
    assert code == 0
    assert png_size(out) == (2 * 300, 300)
    assert "2 ground truths" in capsys.readouterr().out


def test_wide_inputs_keep_the_image_scale_and_the_stride(tiny, motorbike_sample, photos):
    # 741 x 500 letterboxed to 416 x 288 (width x height) has the scale of the 416 square
    # (416 / 741): only the padding differs, so the targets are those of the square input,
    # shifted by the padding's difference and rescaled to the shorter side.
    square = explain_assignment(tiny, motorbike_sample, S)
    wide = explain_assignment(tiny, motorbike_sample, (288, S))
    assert wide.image.shape == (288, S, 3) and wide.strides == square.strides == [32, 16]
    pad = (S - 500 * S / 741) / 2 - (288 - 500 * S / 741) / 2  # 64 input pixels
    rows = square.targets[:, 2] * S - pad
    assert torch.allclose(wide.targets[:, 2] * 288, rows, atol=0.5)
    assert torch.allclose(wide.targets[:, 1], square.targets[:, 1])
    view = explain_channels(tiny, load_image(photos["coffee"]), (288, S), layer=1)
    assert view.image.shape == (288, S, 3) and view.objectness.shape == (3, 18, 26)
    assert view.stride == 16


def test_explain_layers_at_width_x_height(capsys):
    assert main(["explain", "layers", "--model", "yolov3-tiny", "--img-size", "512x320"]) == 0
    printed = capsys.readouterr().out
    assert "input 512 x 320" in printed and "16 x  320 x  512" in printed


def test_explain_errors(photos, kangaroo_dir, tmp_path, capsys):
    image = str(photos["coffee"])
    assert main(["explain", "assign", image, "--boxes", str(tmp_path / "none.txt"),
                 "--model", "yolov3-tiny"]) == 1
    assert "none.txt: no such label file" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("0 0.5 0.5 0.2\n")
    assert main(["explain", "assign", image, "--boxes", str(bad), "--model", "yolov3-tiny"]) == 1
    assert "bad.txt:1: expected 5 fields" in capsys.readouterr().err
    assert main(["explain", "assign", "nope.jpg", "--data", str(kangaroo_dir),
                 "--model", "yolov3-tiny"]) == 1
    assert "nope.jpg: is not one of the images" in capsys.readouterr().err
    assert main(["explain", "channels", image, "--model", "yolov3-tiny", "--size", "50"]) == 1
    assert "too small" in capsys.readouterr().err
