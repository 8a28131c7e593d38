"""The metric (faster-coco-eval's COCOeval through our wrapper) against hand-derived values and
pycocotools' own COCOeval, class mapping, and evaluate() on a model in memory with
real weights, its boxes checked against OpenCV DNN's. (AP on a realistic set against the
independent COCOeval: tests/test_ap_reference.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_factory import (
    CATEGORY_IDS,
    NAMES,
    coco_json,
    reference_cocoeval,
    write_coco,
    write_photo_dataset,
)
from yolov3 import from_darknet
from yolov3.datasets.open import open_dataset
from yolov3.errors import DataError
from yolov3.evaluation import STAT_NAMES, coco_metrics, evaluate
from yolov3.evaluation.class_map import class_mapping
from yolov3.evaluation.report import format_table, plot_pr_curve
from yolov3.images import letterbox, load_image
from yolov3.inference import DetectOptions


def perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 0.9} for a in gt["annotations"] if not a["iscrowd"]]


def one_box(box: list[float]) -> tuple[dict, list[dict]]:
    gt = {"images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 200}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 90, "bbox": [0, 0, 100, 100],
                           "area": 10000, "iscrowd": 0}],
          "categories": [{"id": 90, "name": "zebra"}]}
    return gt, [{"image_id": 7, "category_id": 90, "bbox": box, "score": 0.8}]


def test_perfect_predictions_give_ap_one_with_ids_1_3_90() -> None:
    gt = coco_json()
    m = coco_metrics(gt, perfect(gt))
    assert m.stats["AP"] == pytest.approx(1.0) and m.stats["AP50"] == pytest.approx(1.0)
    assert [c["id"] for c in m.per_class] == CATEGORY_IDS
    assert [c["name"] for c in m.per_class] == NAMES
    assert all(c["AP"] == pytest.approx(1.0) for c in m.per_class)
    # a prediction under the wrong category id is a miss for both classes
    wrong = perfect(gt)
    for p in wrong:
        p["category_id"] = {1: 3, 3: 1, 90: 90}[p["category_id"]]
    m = coco_metrics(gt, wrong)
    assert [c["AP50"] for c in m.per_class] == [0.0, 0.0, pytest.approx(1.0)]


def test_shifted_box_gives_the_known_ap() -> None:
    # IoU 0.62: a hit at thresholds 0.50, 0.55, 0.60 of the ten -> AP 0.3, AP50 1, AP75 0
    gt, dets = one_box([0, 0, 100, 62])
    m = coco_metrics(gt, dets)
    assert m.stats["AP"] == pytest.approx(0.3)
    assert m.stats["AP50"] == pytest.approx(1.0) and m.stats["AP75"] == pytest.approx(0.0)
    assert m.stats["APs"] == -1 and m.stats["APl"] == pytest.approx(0.3)  # one large box
    assert m.per_class[0]["AP"] == pytest.approx(0.3)


@pytest.mark.parametrize("shift", [(3, 8, 100, 100), (30, 0, 100, 100), (0, 0, 80, 130)])
def test_metrics_equal_an_independent_cocoeval_on_the_same_inputs(shift: tuple) -> None:
    """pycocotools' COCOeval (the Python original that faster-coco-eval, which coco_metrics
    runs, ports) on the same ground truth and detections: the 12 numbers and the precision at
    IoU 0.5 of every class and recall threshold agree."""
    gt = coco_json()
    dets = perfect(gt)
    dets[0]["bbox"] = [dets[0]["bbox"][0] + shift[0] / 10, dets[0]["bbox"][1] + shift[1] / 10,
                       dets[0]["bbox"][2] * shift[2] / 100, dets[0]["bbox"][3] * shift[3] / 100]
    dets.append({"image_id": 1, "category_id": 3, "bbox": [1, 1, 20, 20], "score": 0.95})
    ours = coco_metrics(gt, dets)
    ev = reference_cocoeval(gt, dets)
    assert [ours.stats[k] for k in STAT_NAMES] == pytest.approx(list(ev.stats), abs=1e-9)
    np.testing.assert_allclose(ours.precision50, ev.eval["precision"][0, :, :, 0, -1], atol=1e-12)
    assert ours.stats["AP"] < 1  # the shift and the false positive cost something


def test_no_detections_gives_zero() -> None:
    gt, _ = one_box([0, 0, 1, 1])
    m = coco_metrics(gt, [])
    assert m.stats["AP"] == 0 and m.per_class[0]["AP50"] == 0


def test_table_and_plot(tmp_path: Path) -> None:
    gt = coco_json()
    m = coco_metrics(gt, perfect(gt))
    table = format_table(m)
    assert "AP50  AP  @[IoU=0.50      | area=   all | maxDets=100] = 1.000" in table
    assert "zebra" in table and "   90" in table
    plot_pr_curve(m, tmp_path / "pr.png")
    with Image.open(tmp_path / "pr.png") as im:
        assert im.size == (700, 600)


def test_class_mapping() -> None:
    assert class_mapping(["a", "b"], ["x", "y"]).tolist() == [0, 1]  # names unknown: in order
    assert class_mapping(["dog", "cat"], ["Cat", "dog"]).tolist() == [1, 0]  # by name first
    assert class_mapping(["dog", "cat"], ["cat", "x"]).tolist() == [0, 1]  # not all: in order
    coco_like = ["person", "motorbike", "aeroplane", "pottedplant", "cup"]
    assert class_mapping(coco_like, ["cup", "Potted Plant", "motorcycle"]).tolist() == \
        [-1, 2, -1, 1, 0]
    with pytest.raises(DataError, match="share no name"):
        class_mapping(coco_like, ["kangaroo"])


@pytest.fixture(scope="module")
def tiny(tiny_weights: Path):
    return from_darknet("yolov3-tiny", tiny_weights)


def opencv_best_box(weights: Path, photo: Path, cls: int) -> tuple[np.ndarray, float]:
    """x1, y1, x2, y2 (network-input pixels) and score of OpenCV DNN's most confident
    ``cls`` row for the 416 x 416 letterboxed photo."""
    import cv2

    from yolov3.model.cfg import builtin_cfg_path

    blob, _ = letterbox(load_image(photo), (416, 416))
    net = cv2.dnn.readNetFromDarknet(str(builtin_cfg_path("yolov3-tiny")), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(blob[None].numpy())
    rows = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()))
    best = rows[rows[:, 5 + cls].argmax()]  # class columns: objectness x probability
    cx, cy, w, h = best[:4] * 416
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), float(best[5 + cls])


def test_evaluate_maps_category_ids_both_ways(tiny, tiny_weights, photos,
                                              tmp_path: Path) -> None:
    # ids 90 (cup), 3 (motorcycle) and 1 (a class without boxes) for this dataset
    path = write_photo_dataset(tmp_path, photos, 90, 3, [{"id": 1, "name": "person"}])
    ds = open_dataset(path)
    assert ds.category_ids == [1, 3, 90] and ds.names == ["person", "motorcycle", "cup"]
    result = evaluate(tiny, ds, out_dir=tmp_path / "out", progress=False)
    assert result["AP50"] == pytest.approx(1.0)
    per_class = {c["id"]: c for c in result["per_class"]}
    assert per_class[90]["AP50"] == pytest.approx(1.0) and per_class[1]["AP50"] is None
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert {p["category_id"] for p in preds} <= {1, 3, 90}
    best_cup = max((p for p in preds if p["image_id"] == 1), key=lambda p: p["score"])
    assert best_cup["category_id"] == 90
    # The same detection by OpenCV DNN's darknet importer (another implementation of the
    # network) on the same 416 x 416 input, mapped back by hand: coffee.png is 600 x 400,
    # resized to 416 x int(400 * 416 / 600) = 277 rows (scales 416 / 600 across, 277 / 400
    # down) with a pad of (416 - 277) // 2 = 69 above.
    x, y, w, h = best_cup["bbox"]
    expected, score = opencv_best_box(tiny_weights, photos["coffee"], 41)  # COCO class 41: cup
    expected = (expected - np.array([0, 69, 0, 69])) / np.array([416 / 600, 277 / 400] * 2)
    np.testing.assert_allclose([x, y, x + w, y + h], expected, atol=0.05)
    assert best_cup["score"] == pytest.approx(score, abs=1e-4)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(STAT_NAMES) <= metrics.keys() and metrics["AP50"] == result["AP50"]
    assert (tmp_path / "out" / "pr_curve.png").stat().st_size > 0
    assert not tiny.training  # the model's mode is left as it was


def test_evaluate_restores_training_mode_and_scores_all_formats(tiny, photos,
                                                                tmp_path: Path) -> None:
    from yolov3.datasets.convert import convert

    path = write_photo_dataset(tmp_path / "coco", photos, 47, 4)
    results = {"coco": evaluate(tiny, open_dataset(path), progress=False, batch_size=2)}
    for fmt in ("yolo", "voc"):
        convert(path, fmt, tmp_path / fmt)
        tiny.train()
        results[fmt] = evaluate(tiny, open_dataset(tmp_path / fmt, "val"), progress=False)
        assert tiny.training
    tiny.eval()
    for fmt, r in results.items():
        assert r["AP50"] == pytest.approx(1.0), fmt
        # one box per class: the same numbers whatever the format on disk (VOC's 1-based
        # corners and YOLO's fractions come back to the same pixels)
        assert r["AP"] == pytest.approx(results["coco"]["AP"], abs=1e-9), fmt


def test_unreadable_image_is_skipped_and_reported(tiny, tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    (tmp_path / "images" / "2.JPG").write_bytes(b"not a picture")
    ds = open_dataset(path)
    at_128 = DetectOptions.for_evaluation(img_size=128)
    result = evaluate(tiny, ds, at_128, progress=False, model_names=["cat"] * 80)
    assert result["images"] == 3
    assert len(ds.problems) == 1 and "2.JPG: not a readable image" in ds.problems.messages[0]
    with pytest.raises(DataError, match=r"2\.JPG: not a readable image"):
        evaluate(tiny, open_dataset(path, strict=True), at_128, progress=False,
                 model_names=["cat"] * 80)
