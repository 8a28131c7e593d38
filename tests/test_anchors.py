"""Anchor fitting: k-means with 1 - IoU recovers known clusters, is seeded, fails clearly on
too little data, measures anchor sets, writes a cfg; ``yolov3 anchors`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from data_factory import write_voc
from yolov3 import build_model
from yolov3.anchors import (
    anchor_quality,
    anchors_cfg_line,
    box_shapes,
    fit_anchors,
    fit_anchors_for_training,
    kmeans_anchors,
    write_anchor_cfg,
)
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.errors import ConfigError, DataError
from yolov3.loss import anchor_shape_iou
from yolov3.model.cfg import cfg_anchors, load_cfg

# Five well-separated shapes (w, h), smallest area first.
TRUE_CENTRES = np.array([[12.0, 20], [60, 30], [45, 110], [180, 90], [260, 300]])


def clustered_shapes(seed: int = 0, per_cluster: int = 300, spread: float = 0.06) -> np.ndarray:
    """Box shapes scattered around TRUE_CENTRES by a log-normal factor on each side."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(TRUE_CENTRES, per_cluster, axis=0)
    return centres * rng.lognormal(0.0, spread, centres.shape)


def test_kmeans_recovers_known_clusters():
    anchors = kmeans_anchors(clustered_shapes(), num_anchors=5, seed=0)
    # Sorted by area like the true centres, so anchor k is cluster k's estimate.
    iou = anchor_shape_iou(torch.from_numpy(anchors), torch.from_numpy(TRUE_CENTRES))
    assert torch.diagonal(iou).min() > 0.95
    assert np.all(np.diff(anchors.prod(axis=1)) > 0)


def test_kmeans_is_reproducible_with_a_seed():
    shapes = clustered_shapes(seed=1, spread=0.4)  # overlapping clusters: the seed matters
    first = kmeans_anchors(shapes, 9, restarts=3, seed=7)
    again = kmeans_anchors(shapes, 9, restarts=3, seed=7)
    assert np.array_equal(first, again)


def test_too_few_distinct_boxes_is_a_clear_error():
    shapes = np.array([[10, 10], [10, 10], [20, 40], [20, 40], [50, 30]], float)
    message = r"mydata: has 3 distinct box shapes \(5 boxes\), fewer than the 4 anchors"
    with pytest.raises(DataError, match=message):
        kmeans_anchors(shapes, 4, source="mydata")
    assert len(kmeans_anchors(shapes, 3)) == 3


def test_dataset_with_fewer_distinct_boxes_than_anchors(tmp_path):
    dataset = open_dataset(write_voc(tmp_path / "voc"), "all")
    # 5 boxes, one of them "difficult" (left out of training): 4 shapes.
    assert len(box_shapes(dataset)) == 4
    with pytest.raises(DataError, match=f"{tmp_path / 'voc'}: has 4 distinct box shapes"):
        fit_anchors(dataset, 9)
    anchors, shapes = fit_anchors(dataset, 4)
    # Four shapes, four anchors: each anchor is one shape, rounded to whole pixels.
    expected = np.maximum(np.round(shapes[np.argsort(shapes.prod(axis=1))]), 1)
    assert np.array_equal(anchors, expected)


def test_box_shapes_in_letterboxed_pixels(tmp_path):
    dataset = open_dataset(write_voc(tmp_path / "voc"), "all")
    shapes = box_shapes(dataset, img_size=416)
    # "1.png" is 64x48: letterboxed by 416/64 = 6.5. Its boxes come first (images by name).
    assert shapes[0].tolist() == pytest.approx([26 * 6.5, 34 * 6.5])
    assert shapes[1].tolist() == pytest.approx([49.5 * 6.5, 18.25 * 6.5])


def test_anchor_quality_by_hand():
    shapes = np.array([[10.0, 10], [20, 20], [10, 40]])
    q = anchor_quality(shapes, np.array([[10.0, 10]]))
    # IoUs 1, 100/400, 100/400.
    assert q.mean_iou == pytest.approx(0.5)
    assert q.recall == pytest.approx(1 / 3)
    assert q.num_boxes == 3


def test_kangaroo_anchors_beat_coco_anchors(kangaroo_dir):
    dataset = open_dataset(kangaroo_dir, "all")
    anchors, shapes = fit_anchors(dataset, 9, 416, seed=0)
    fitted = anchor_quality(shapes, anchors)
    coco = anchor_quality(shapes, cfg_anchors(load_cfg("yolov3")))
    assert fitted.mean_iou > coco.mean_iou + 0.05
    assert fitted.recall >= coco.recall


def test_training_hook_builds_a_model_with_the_fitted_anchors(kangaroo_dir):
    dataset = open_dataset(kangaroo_dir, "all")
    anchors = fit_anchors_for_training(dataset, 6, 416, seed=3)
    assert anchors == fit_anchors_for_training(dataset, 6, 416, seed=3)
    assert all(isinstance(w, float) and isinstance(h, float) for w, h in anchors)
    model = build_model("yolov3-tiny", num_classes=1, anchors=anchors)
    assert model.anchors.tolist() == [list(a) for a in anchors]


def test_write_anchor_cfg(tmp_path):
    anchors = np.array([[5, 6], [7, 8], [9, 10], [20, 21], [40, 41], [80, 81]], float)
    path = write_anchor_cfg("yolov3-tiny", anchors, tmp_path / "new.cfg", num_classes=2)
    model = build_model(path)
    assert model.anchors.tolist() == anchors.tolist()
    assert model.num_classes == 2
    assert [y.mask for y in model.yolo_layers] == [[3, 4, 5], [1, 2, 3]]
    with pytest.raises(ConfigError, match=r"has 6 anchors .* but 9 were fitted; fit 6"):
        write_anchor_cfg("yolov3-tiny", np.ones((9, 2)), tmp_path / "bad.cfg")
    assert anchors_cfg_line(anchors[:2]) == "anchors = 5,6,  7,8"


def test_anchors_command(kangaroo_dir, tmp_path, capsys):
    out = tmp_path / "anchors"
    code = main(["anchors", "--data", str(kangaroo_dir), "--split", "all", "--size", "300",
                 "--restarts", "3", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.startswith("anchors = "))
    assert "yolov3's anchors:" in printed and "best possible recall" in printed
    with Image.open(out / "anchors.png") as picture:
        assert picture.size == (600, 300)
    model = build_model(out / "yolov3-anchors.cfg")
    assert model.num_classes == 1
    assert anchors_cfg_line(model.anchors.numpy()) == line
    assert (out / "anchors.png").stat().st_size > 10_000


def test_anchors_command_error(kangaroo_dir, tmp_path, capsys):
    code = main(["anchors", "--data", str(kangaroo_dir), "--split", "all", "--n", "1000",
                 "--out", str(tmp_path)])
    assert code == 1
    assert "fewer than the 1000 anchors" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["100000", "199", "0"])
def test_anchors_picture_size_is_checked_first(kangaroo_dir, tmp_path, capsys, size):
    """--size 100000 died of a MemoryError drawing a 200000x100000 picture; a side out of
    range is refused before the boxes are clustered."""
    out = tmp_path / "anchors"
    assert main(["anchors", "--data", str(kangaroo_dir), "--split", "all", "--size", size,
                 "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert f"--size {size}: too " in captured.err
    assert "a picture's side is 200 to 4096 pixels" in captured.err
    assert not captured.out and not out.exists()
