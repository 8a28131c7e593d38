"""One class-id convention in every output: the 0-based class index (the line of the names
list, the class of a YOLO txt label) in detect's JSON and label files and in val's
predictions, per-class table and confusion matrix; a COCO JSON dataset's own category ids in
val's outputs on it; COCO's 1-based ids when a dataset is converted to a COCO JSON."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from yolov3.classes import default_names
from yolov3.cli.main import main

COCO_NAMES = default_names(80)
CUP, MOTORCYCLE = COCO_NAMES.index("cup"), COCO_NAMES.index("motorbike")  # 41, 3 (darknet's names)
# The hand-placed boxes of data_factory.write_photo_dataset (x1, y1, x2, y2 pixels).
BOXES = {"coffee": (CUP, (172, 18, 408, 306)), "motorcycle_left": (MOTORCYCLE, (92, 15, 684, 451))}


@pytest.fixture
def yolo_data(photos: dict[str, Path], tmp_path: Path) -> Path:
    """A YOLO txt dataset of two photos with COCO's 80 class names (the model's own)."""
    from PIL import Image

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, (cls, (x1, y1, x2, y2)) in BOXES.items():
        shutil.copy(photos[name], root / "images" / f"{name}.png")
        with Image.open(photos[name]) as im:
            w, h = im.size
        (root / "labels" / f"{name}.txt").write_text(
            f"{cls} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n")
    (root / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images", "val": "images", "names": COCO_NAMES}))
    return root / "data.yaml"


def val(data: Path, weights: Path, out: Path) -> dict:
    assert main(["val", "--data", str(data), "--model", "yolov3-tiny", "--weights", str(weights),
                 "--out", str(out), "--workers", "0", "--batch-size", "2"]) == 0
    return {name: json.loads((out / name).read_text())
            for name in ("metrics.json", "predictions.json", "confusion_matrix.json")}


def test_detect_and_val_give_a_class_the_same_id(yolo_data: Path, tiny_weights: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "detect"
    assert main(["detect", str(yolo_data.parent / "images"), "--weights", str(tiny_weights),
                 "--out", str(out), "--save-txt", "--precision", "fp32"]) == 0
    records = json.loads((out / "detections.json").read_text())
    detected = {(r["category_name"], r["category_id"]) for r in records}
    assert {("cup", CUP), ("motorbike", MOTORCYCLE)} <= detected
    assert all(COCO_NAMES[i] == name for name, i in detected)
    txt_classes = {int(line.split()[0]) for f in (out / "labels").glob("*.txt")
                   for line in f.read_text().splitlines()}
    assert txt_classes == {i for _, i in detected}

    report = val(yolo_data, tiny_weights, tmp_path / "val")
    per_class = {c["name"]: c["id"] for c in report["metrics.json"]["per_class"]}
    assert per_class["cup"] == CUP and per_class["motorbike"] == MOTORCYCLE
    assert all(COCO_NAMES[i] == name for name, i in per_class.items())
    predicted = {p["category_id"] for p in report["predictions.json"]}
    assert {CUP, MOTORCYCLE} <= predicted and predicted <= set(range(80))
    assert {i for _, i in detected} <= predicted
    matrix = report["confusion_matrix.json"]
    assert matrix["names"][-1] == "background"
    assert dict(zip(matrix["names"][:-1], matrix["category_ids"], strict=True)) == {
        name: i for i, name in enumerate(COCO_NAMES)}
    table = capsys.readouterr().out
    assert re.search(rf"^cup +{CUP} ", table, re.M)
    assert re.search(rf"^motorbike +{MOTORCYCLE} ", table, re.M)


def test_coco_json_keeps_its_ids_and_conversion_to_coco_starts_at_one(
        yolo_data: Path, tiny_weights: Path, tmp_path: Path) -> None:
    coco = tmp_path / "coco"
    assert main(["data", "convert", str(yolo_data), "--to", "coco", "--out", str(coco)]) == 0
    gt = json.loads((coco / "annotations" / "instances_val.json").read_text())
    ids = {c["name"]: c["id"] for c in gt["categories"]}
    assert ids["cup"] == CUP + 1 and ids["person"] == 1 and sorted(ids.values()) == list(
        range(1, 81))
    report = val(coco / "data.yaml", tiny_weights, tmp_path / "val")
    per_class = {c["name"]: c["id"] for c in report["metrics.json"]["per_class"]}
    assert per_class["cup"] == CUP + 1 and per_class["motorbike"] == MOTORCYCLE + 1
    assert {CUP + 1, MOTORCYCLE + 1} <= {p["category_id"] for p in report["predictions.json"]}
