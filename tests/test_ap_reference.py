"""COCO AP of a real detector on real photos, checked against an independent implementation.

The detector: darknet's official yolov3-tiny. The photos: the first images of coco128-train
(../shared/datasets/coco128-train: COCO train2017 photos with their 80-class boxes, as YOLO txt
labels and as the distributor's own COCO JSON). Our side: ``evaluate()`` on the YOLO form (our
reader, our conversion of its labels to COCO's ground truth, faster-coco-eval's COCOeval). The
reference: pycocotools (COCO's own Python COCOeval, which faster-coco-eval ports) on the
distributor's ``instances_train.json`` with the same detections. The 12 numbers must agree to
1e-4; they are far from trivial (hundreds of boxes of dozens of classes, AP50 about 0.4: see
the dataset's README). The ground truth that our converter writes for VOC and COCO copies of
the set must give the reference's numbers too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SHARED
from data_factory import reference_cocoeval
from yolov3 import from_darknet
from yolov3.datasets.convert import convert
from yolov3.datasets.open import open_dataset
from yolov3.evaluation import STAT_NAMES, coco_metrics, evaluate
from yolov3.evaluation.coco_eval import ground_truth
from yolov3.inference import DetectOptions

COCO128 = SHARED / "datasets" / "coco128-train"
IMAGES = 48  # of the 128: 406 boxes of 56 classes; inference at 320: under 10 s
SIZE = 320


def reference_stats(gt: dict, detections: list[dict]) -> np.ndarray:
    """pycocotools' 12 summary numbers, in COCOeval's order."""
    return np.array(reference_cocoeval(gt, detections).stats)


@pytest.fixture(scope="module")
def run(tiny_weights, tmp_path_factory) -> dict:
    if not (COCO128 / "instances_train.json").is_file():
        pytest.skip(f"the shared coco128-train dataset is not at {COCO128}")
    root = tmp_path_factory.mktemp("coco128")
    files = sorted((COCO128 / "images" / "train2017").glob("*.jpg"))[:IMAGES]
    names = yaml.safe_load((COCO128 / "data.yaml").read_text())["names"]
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(COCO128), "val": [str(f) for f in files], "names": names}))
    dataset = open_dataset(root / "data.yaml", "val")
    assert len(dataset) == IMAGES
    model = from_darknet("yolov3-tiny", tiny_weights)
    result = evaluate(model, dataset, DetectOptions.for_evaluation(img_size=SIZE), progress=False,
                      out_dir=root / "out")
    predictions = json.loads((root / "out" / "predictions.json").read_text())

    # The distributor's COCO JSON, cut to the same images: COCO's category ids 1..90, its
    # categories in darknet's class order (the YOLO txt class k is the k-th id).
    official = json.loads((COCO128 / "instances_train.json").read_text())
    by_name = {Path(im["file_name"]).name: im for im in official["images"]}
    kept = {by_name[f.name]["id"] for f in files}
    official["images"] = [im for im in official["images"] if im["id"] in kept]
    official["annotations"] = [a for a in official["annotations"] if a["image_id"] in kept]
    coco_ids = [c["id"] for c in official["categories"]]
    return {"root": root, "dataset": dataset, "result": result, "predictions": predictions,
            "official": official, "coco_ids": coco_ids, "names": dataset.names,
            "image_id": {f.name: int(i) for f, i in zip(dataset.files, dataset.image_ids,
                                                          strict=True)},
            "official_image_id": {f.name: by_name[f.name]["id"] for f in files}}


def to_official(run: dict, predictions: list[dict]) -> list[dict]:
    """Our detections (the YOLO form's ids: class k is category_id k) in the official ids."""
    image = {run["image_id"][n]: run["official_image_id"][n] for n in run["image_id"]}
    return [{**p, "image_id": image[p["image_id"]],
             "category_id": run["coco_ids"][p["category_id"]]} for p in predictions]


def test_our_numbers_equal_pycocotools_on_the_distributors_annotations(run) -> None:
    ours = np.array([run["result"][k] for k in STAT_NAMES])
    reference = reference_stats(run["official"], to_official(run, run["predictions"]))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
    # a realistic case, not a degenerate one: many boxes and detections, a middling AP
    assert len(run["official"]["annotations"]) > 300 and len(run["predictions"]) > 1500
    assert 0.25 < run["result"]["AP50"] < 0.6 and 0.1 < run["result"]["AP"] < 0.4
    assert all(0 < v < 1 for v in reference)  # every size has boxes here


@pytest.mark.parametrize("fmt", ["yolo", "voc", "coco"])
def test_ground_truth_we_convert_scores_like_the_distributors(run, fmt, tmp_path) -> None:
    """The ground truth our code builds (read from the YOLO txt, or from our VOC or COCO
    conversion of it) gives pycocotools' numbers of the official annotations, and so do
    our metric on it."""
    if fmt == "yolo":
        dataset = run["dataset"]
    else:
        convert(run["root"] / "data.yaml", fmt, tmp_path / fmt, symlink=True)
        dataset = open_dataset(tmp_path / fmt / "data.yaml" if fmt == "coco" else tmp_path / fmt,
                               "val")
    assert len(dataset) == IMAGES
    gt = ground_truth(dataset, set())
    # our detections in this dataset's own image and category ids, matched by name
    image = {run["image_id"][f.name]: int(i)
             for f, i in zip(dataset.files, dataset.image_ids, strict=True)}
    category = {n: c for n, c in zip(dataset.names, dataset.category_ids, strict=True)}
    dets = [{**p, "image_id": image[p["image_id"]],
             "category_id": category[run["names"][p["category_id"]]]}
            for p in run["predictions"]]
    expected = reference_stats(run["official"], to_official(run, run["predictions"]))
    np.testing.assert_allclose(reference_stats(gt, dets), expected, rtol=0, atol=1e-4)
    ours = coco_metrics(gt, dets).stats
    np.testing.assert_allclose([ours[k] for k in STAT_NAMES], expected, rtol=0, atol=1e-4)
    assert len(gt["annotations"]) == len(run["official"]["annotations"])
