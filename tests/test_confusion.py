"""The confusion matrix and the P/R/F1 curves against counts and thresholds worked out by hand,
the curves' matching against pycocotools' own, and what `yolov3 val` writes of them."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data_factory import write_photo_dataset
from yolov3.classes import coco_names
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.errors import DataError
from yolov3.evaluation import confusion_matrix, score_curves
from yolov3.evaluation.coco_eval import ground_truth
from yolov3.evaluation.confusion import confusion_figure
from yolov3.evaluation.curves import curves_figure
from yolov3.evaluation.matching import one_to_one
from yolov3.evaluation.report import save_figure

CATS = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 90, "name": "zebra"}]


def det(image: int, cat: int, box: list[float], score: float) -> dict:
    return {"image_id": image, "category_id": cat, "bbox": box, "score": score}


def write_set(root: Path, images: list[tuple[int, int, int]], boxes: list[tuple]) -> Path:
    """A COCO dataset in ``root``: images (id, width, height) of random pixels, boxes
    (image id, category id, x, y, w, h, iscrowd)."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, w, h in images:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(root / "images" /
                                                                        f"{k}.png")
    anns = [{"id": n, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h,
             "iscrowd": crowd} for n, (i, c, x, y, w, h, crowd) in enumerate(boxes, 1)]
    path = root / "instances_val.json"
    path.write_text(json.dumps({
        "images": [{"id": k, "file_name": f"{k}.png", "width": w, "height": h}
                   for k, w, h in images],
        "annotations": anns, "categories": CATS}))
    return path


def read_ground_truth(path: Path) -> dict:
    """The ground truth that evaluate() scores against, read back by the dataset reader."""
    return ground_truth(open_dataset(path), set())


def test_confusion_matrix_counts_each_case(tmp_path: Path) -> None:
    gt = read_ground_truth(write_set(tmp_path, [(1, 200, 200), (2, 100, 100)], [
        (1, 1, 10, 10, 50, 50, 0),     # cat, found as a cat
        (1, 3, 100, 100, 60, 60, 0),   # dog, found as a cat (IoU 1) and a dog (IoU 0.67)
        (1, 90, 10, 120, 40, 40, 0),   # zebra, its detection scored under 0.25: missed
        (1, 1, 150, 0, 50, 80, 1),     # a crowd of cats
        (2, 3, 0, 0, 50, 50, 0),       # dog, found twice
        (2, 1, 60, 60, 40, 40, 0),     # cat, its detection at IoU 0.4: missed
    ]))
    predictions = [
        det(1, 1, [10, 10, 50, 50], 0.9),
        det(1, 1, [100, 100, 60, 60], 0.8),
        det(1, 3, [112, 100, 60, 60], 0.7),  # the box went to the better overlap: background
        det(1, 90, [10, 120, 40, 40], 0.2),  # under the threshold
        det(1, 3, [160, 10, 30, 30], 0.5),   # on the crowd: nothing
        det(1, 1, [0, 170, 20, 20], 0.6),    # on nothing: background
        det(2, 3, [0, 0, 45, 50], 0.85),     # IoU 0.9, the better one
        det(2, 3, [0, 0, 50, 40], 0.95),     # IoU 0.8, the duplicate: background
        det(2, 1, [60, 60, 40, 16], 0.9),    # IoU 0.4 under 0.45: background, and a miss
    ]
    cm = confusion_matrix(gt, predictions)
    # rows: true cat, dog, zebra, background; columns: predicted, the same order
    assert cm.counts.tolist() == [[1, 0, 0, 1],
                                  [1, 1, 0, 0],
                                  [0, 0, 0, 1],
                                  [2, 2, 0, 0]]
    assert cm.names == ["cat", "dog", "zebra"] and cm.category_ids == [1, 3, 90]
    # at IoU 0.35 the 0.4 pair is a match; at score 0.1 the zebra is found
    loose = confusion_matrix(gt, predictions, conf=0.1, iou=0.35)
    assert loose.counts[0].tolist() == [2, 0, 0, 0] and loose.counts[2].tolist() == [0, 0, 1, 0]
    assert loose.counts[3].tolist() == [1, 2, 0, 0]
    as_json = json.loads(json.dumps(cm.to_dict()))
    assert as_json["names"] == ["cat", "dog", "zebra", "background"]
    assert as_json["matrix"] == cm.counts.tolist() and (as_json["conf"], as_json["iou"]) == \
        (0.25, 0.45)


def test_confusion_figure_for_one_and_eighty_classes(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "width": 50, "height": 50}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 20, 20],
                           "iscrowd": 0}],
          "categories": [{"id": 5, "name": "kangaroo"}]}
    one = confusion_matrix(gt, [det(1, 5, [0, 0, 20, 20], 0.9)])
    assert one.counts.tolist() == [[1, 0], [0, 0]]
    many = {**gt, "categories": [{"id": k, "name": n} for k, n in enumerate(coco_names())]}
    eighty = confusion_matrix(many, [det(1, 5, [0, 0, 20, 20], 0.9)])
    assert eighty.counts.shape == (81, 81) and eighty.counts[5, 5] == 1
    for name, cm in (("one", one), ("eighty", eighty)):
        save_figure(confusion_figure(cm), tmp_path / f"{name}.png")
    with Image.open(tmp_path / "one.png") as small, Image.open(tmp_path / "eighty.png") as big:
        assert small.size == (720, 600) and big.size == (2040, 1920)
        pixels = np.asarray(small.convert("RGB"))
    # the kangaroo row normalised: its one cell at the darkest blue, a quarter of the matrix
    assert (pixels == [8, 48, 107]).all(axis=-1).sum() > 0.2 * 250 * 250
    # a class name longer than the figure is cut, the matrix still drawn
    long = {**gt, "categories": [{"id": 5, "name": "an eastern grey kangaroo " * 8}]}
    save_figure(confusion_figure(confusion_matrix(long, [det(1, 5, [0, 0, 20, 20], 0.9)])),
                tmp_path / "long.png")
    with Image.open(tmp_path / "long.png") as im:
        assert im.size == (720, 600)
        dark = (np.asarray(im.convert("RGB")) == [8, 48, 107]).all(axis=-1).sum()
    assert dark > 0.05 * 250 * 250


def test_unknown_category_is_an_error() -> None:
    gt = {"images": [], "annotations": [], "categories": CATS}
    with pytest.raises(DataError, match="predictions: category id 2 is not one of"):
        confusion_matrix(gt, [det(1, 2, [0, 0, 1, 1], 0.9)])


def test_best_f1_threshold_is_the_one_worked_out_by_hand(tmp_path: Path) -> None:
    gt = read_ground_truth(write_set(tmp_path, [(1, 400, 100)], [
        *((1, 1, 100 * k, 0, 50, 50, 0) for k in range(4)),  # four cats
        (1, 3, 0, 60, 30, 30, 0), (1, 3, 100, 60, 30, 30, 0),  # two dogs
        (1, 1, 300, 60, 40, 40, 1),  # a crowd of cats
    ]))
    cats = [
        det(1, 1, [0, 0, 50, 35], 0.9),      # cat 0 at IoU 0.7: true (first in score order)
        det(1, 1, [100, 0, 50, 50], 0.8),    # true
        det(1, 1, [0, 0, 50, 49], 0.7),      # cat 0 again, though at IoU 0.98: false
        det(1, 1, [200, 0, 50, 50], 0.6),    # true
        det(1, 1, [305, 65, 20, 20], 0.55),  # on the crowd: not counted
        det(1, 1, [0, 55, 10, 10], 0.3),     # false
        det(1, 1, [300, 0, 50, 50], 0.2),    # true
    ]
    dogs = [det(1, 3, [0, 60, 30, 30], 0.5), det(1, 3, [200, 60, 30, 30], 0.4)]
    curves = score_curves(gt, cats + dogs)
    assert curves.boxes.tolist() == [4, 2, 0]
    assert curves.score.tolist() == [0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.5, 0.4]
    assert curves.hit.tolist() == [True, True, False, True, False, True, True, False]
    # F1 = 2 TP / (kept + boxes). Cats above 0.6: TP 3 of 4 kept, 4 boxes: F1 0.75 (the best
    # cat F1 from 0.3 to 0.6); dogs above 0.4: TP 1 of 1, 2 boxes: F1 2/3, above 0.3 and 0.2:
    # 2/4 = 0.5. Mean F1 above 0.4: (0.75 + 2/3) / 2 = 0.708; above 0.3: 0.625; above 0.5:
    # (0.75 + 0) / 2; above 0.2: (6/9 + 0.5) / 2 = 0.583; above 0: (8/10 + 0.5) / 2 = 0.65.
    best = curves.best_f1()
    assert best == {"threshold": 0.4, "P": pytest.approx((0.75 + 1) / 2),
                    "R": pytest.approx((0.75 + 0.5) / 2), "F1": pytest.approx((0.75 + 2 / 3) / 2),
                    "iou": 0.5, "classes": 2}
    p, r, f1 = curves.at(0, np.array([0.0, 0.25, 0.65, 0.95]))
    np.testing.assert_allclose(p, [4 / 6, 3 / 5, 2 / 3, 0])
    np.testing.assert_allclose(r, [1, 0.75, 0.5, 0])
    np.testing.assert_allclose(f1, [0.8, 6 / 9, 4 / 7, 0])
    save_figure(curves_figure(curves), tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as im:
        assert im.size == (1800, 550)


def test_no_ground_truth_boxes_has_no_best_f1() -> None:
    gt = {"images": [{"id": 1}], "annotations": [], "categories": CATS}
    assert score_curves(gt, [det(1, 1, [0, 0, 5, 5], 0.5)]).best_f1() is None


def greedy(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The plain sequential greedy matching one_to_one must equal."""
    used_a, used_b, keep = set(), set(), []
    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        keep.append(a not in used_a and b not in used_b)
        if keep[-1]:
            used_a.add(a)
            used_b.add(b)
    return np.array(keep, bool)


@pytest.mark.parametrize("seed", range(5))
def test_one_to_one_is_the_sequential_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, 15, 200), rng.integers(0, 12, 200)
    np.testing.assert_array_equal(one_to_one(first, second), greedy(first, second))


def random_set(rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """Three images of clustered boxes of two classes, some crowd, and detections near them."""
    anns, dets = [], []
    for image in (1, 2, 3):
        centres = rng.uniform(20, 180, (4, 2))
        for c in centres:
            for _ in range(3):
                x, y = c + rng.normal(0, 6, 2)
                w, h = rng.uniform(15, 40, 2)
                anns.append({"id": len(anns) + 1, "image_id": image,
                             "category_id": int(rng.choice([1, 3])), "bbox": [x, y, w, h],
                             "area": w * h, "iscrowd": int(rng.random() < 0.15)})
                for _ in range(2):
                    jitter = rng.normal(0, 4, 4)
                    dets.append(det(image, int(rng.choice([1, 3])),
                                    [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]],
                                    float(rng.uniform(0.01, 1))))
    gt = {"images": [{"id": k, "width": 250, "height": 250} for k in (1, 2, 3)],
          "annotations": anns, "categories": CATS[:2]}
    return gt, dets


@pytest.mark.parametrize("seed", range(3))
def test_curve_matching_is_cocoevals_at_iou_half(seed: int) -> None:
    """pycocotools' own matching (COCOeval.evaluateImg, area 'all', no cap on detections):
    the same true positives and the same detections ignored on crowd regions."""
    gt, dets = random_set(np.random.default_rng(seed))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.params.iouThrs = np.array([0.5])
        ev.params.maxDets = [1000]
        ev.evaluate()
    all_area = [0, 1e10]
    hits, ignored = set(), set()
    for e in ev.evalImgs:
        if e is None or e["aRng"] != all_area:
            continue
        for d, m, skip in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0], strict=True):
            if skip:
                ignored.add(d)
            elif m > 0:
                hits.add(d)
    curves = score_curves(gt, dets)
    # loadRes numbers the detections 1, 2, ... in order; ours are sorted by class and score
    order = np.lexsort((-np.array([d["score"] for d in dets]),
                        [d["category_id"] for d in dets]))
    counted = [k + 1 for k in order.tolist() if k + 1 not in ignored]
    assert len(curves.hit) == len(counted) and ignored and hits
    assert {d for d, h in zip(counted, curves.hit.tolist(), strict=True) if h} == hits


def test_val_writes_the_confusion_matrix_and_curves(tiny_weights: Path, photos: dict[str, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = write_photo_dataset(tmp_path / "coco", photos, cup_id=47, motorbike_id=4)
    names = coco_names()
    names[3] = "scooter"  # the model's motorbike is no class of the dataset
    (tmp_path / "names.txt").write_text("\n".join(names))
    out = tmp_path / "out"
    assert main(["val", "--data", str(data), "--model", "yolov3-tiny", "--weights",
                 str(tiny_weights), "--names", str(tmp_path / "names.txt"), "--out", str(out),
                 "--workers", "0", "--cm-conf", "0.3", "--cm-iou", "0.5"]) == 0
    cm = json.loads((out / "confusion_matrix.json").read_text())
    assert cm["names"] == ["motorcycle", "cup", "background"] and cm["category_ids"] == [4, 47]
    assert (cm["conf"], cm["iou"]) == (0.3, 0.5)
    # the cup found, the motorcycle missed: nothing of the model is a motorcycle now
    assert cm["matrix"][0] == [0, 0, 1] and cm["matrix"][1] == [0, 1, 0]
    assert cm["matrix"][2][0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    best = metrics["best_f1"]
    # the cup's F1 is 1 above the threshold, the motorcycle's 0: the mean is 0.5
    assert best["F1"] == pytest.approx(0.5) and best["R"] == pytest.approx(0.5)
    assert best["P"] == pytest.approx(0.5) and best["classes"] == 2 and best["iou"] == 0.5
    predictions = json.loads((out / "predictions.json").read_text())
    cups = sorted((p["score"] for p in predictions if p["category_id"] == 47), reverse=True)
    assert best["threshold"] == (cups[1] if len(cups) > 1 else 0.0)  # the best cup kept
    for png in ("confusion_matrix.png", "prf_curves.png", "pr_curve.png"):
        with Image.open(out / png) as im:
            assert im.size[0] >= 600
    printed = capsys.readouterr().out
    block = printed[:printed.index("AP  @[IoU=0.50:0.95")]
    assert f"best F1 0.500 at score > {best['threshold']:g}: precision 0.500, recall 0.500" \
        in block
    assert f"written to {out}: metrics.json" in block and "confusion_matrix.png" in block


@pytest.mark.parametrize(("option", "value"), [("--cm-conf", "1.5"), ("--cm-iou", "nan")])
def test_confusion_thresholds_outside_0_1_are_refused(option: str, value: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["val", "--data", str(tmp_path), option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: must be in [0, 1]" in capsys.readouterr().err
