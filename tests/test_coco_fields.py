"""COCO's fields are checked for their type: a number written as text ("236.98") is refused,
naming the image or annotation and the field, in every field the reader uses; the reader, the
metric's ground truth and ``yolov3 data check`` apply the one rule, so that a set that checks
clean evaluates (before, string boxes passed the check and crashed the metric)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import MICRO3_CFG
from data_factory import IMAGES, NAMES, write_coco
from yolov3.cli.main import main
from yolov3.datasets.check import check_dataset
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.convert import convert
from yolov3.datasets.problems import MALFORMED
from yolov3.errors import DataError
from yolov3.evaluation import evaluate
from yolov3.inference import DetectOptions
from yolov3.model import build_model
from yolov3.model.cfg import parse_cfg_text

# annotation id 3 is image 2's first box (the dog)
ANNOTATION_FIELDS = {
    "bbox": ["0", "0", "80", "60"],
    "image_id": "2",
    "category_id": "3",
    "iscrowd": "0",
    "area": "4800",
    "id": "3",
}


def broken(root: Path, where: str, key: str, value: object) -> Path:
    path = write_coco(root)
    data = json.loads(path.read_text())
    entry = {"annotations": data["annotations"][2], "images": data["images"][1],
             "categories": data["categories"][1]}[where]
    entry[key] = value
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("key", "value"), ANNOTATION_FIELDS.items())
def test_an_annotation_number_written_as_text_is_refused(tmp_path: Path, key: str,
                                                         value: object) -> None:
    path = broken(tmp_path, "annotations", key, value)
    ds = CocoDataset(path)
    said = f"annotation #2 (id {'3' if key == 'id' else 3}): malformed (TypeError: {key!r}"
    assert ds.problems.kinds == [MALFORMED] and said in ds.problems.messages[0]
    assert "a number written as text" in ds.problems.messages[0]
    assert [f.name for f in ds.files] == ["1.png", "3.bmp", "4.jpeg"]  # its image is left out
    assert [a["image_id"] for a in ds.ground_truth()["annotations"]] == [1, 1, 4]
    with pytest.raises(DataError, match="a number written as text"):
        CocoDataset(path, strict=True)
    report = check_dataset(path, workers=1, progress=False)
    assert report.messages(MALFORMED) == ds.problems.messages


@pytest.mark.parametrize(("key", "value"), [("id", "2"), ("width", "80"), ("height", "60"),
                                            ("id", 2.5), ("file_name", 2)])
def test_an_image_field_of_the_wrong_type_is_refused(tmp_path: Path, key: str,
                                                     value: object) -> None:
    path = broken(tmp_path, "images", key, value)
    said = re.escape(f"{key!r} is {value!r}")
    with pytest.raises(DataError, match=rf"image #1 .*Error: {said}, "):
        CocoDataset(path)


def test_a_category_id_written_as_text_is_refused(tmp_path: Path) -> None:
    path = broken(tmp_path, "categories", "id", "3")
    with pytest.raises(DataError, match="needs an integer 'id'"):
        CocoDataset(path)


def test_string_boxes_evaluate_and_convert(tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """Every box of image 2 written as text: the set checks with one problem, evaluates (the
    metric crashed in C++ on the strings) and converts without that image."""
    path = write_coco(tmp_path / "coco")
    data = json.loads(path.read_text())
    for a in data["annotations"]:
        if a["image_id"] == 2:
            a["bbox"] = [str(v) for v in a["bbox"]]
    path.write_text(json.dumps(data))
    torch.manual_seed(0)
    model = build_model(parse_cfg_text(MICRO3_CFG))
    ds = CocoDataset(path)
    metrics = evaluate(model, ds, DetectOptions.for_evaluation(img_size=64), model_names=NAMES,
                       progress=False)
    assert metrics["images"] == len(IMAGES) - 1
    assert main(["data", "check", str(path)]) == 1
    assert "2  malformed labels" in capsys.readouterr().out
    convert(path, "yolo", tmp_path / "yolo")
    assert main(["data", "check", str(tmp_path / "yolo"), "--split", "val"]) == 0
    assert "val (yolo): 3 images, 3 boxes" in capsys.readouterr().out
