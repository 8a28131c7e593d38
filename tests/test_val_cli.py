"""``yolov3 val`` end to end with the official yolov3-tiny weights on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_factory import write_photo_dataset, write_yolo
from yolov3.cli.main import main
from yolov3.evaluation import STAT_NAMES


def test_val_gives_ap50_one_on_hand_placed_boxes(tiny_weights: Path, photos: dict[str, Path],
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    data = write_photo_dataset(tmp_path / "coco", photos, cup_id=47, motorbike_id=4)
    out = tmp_path / "out"
    rc = main(["val", "--data", str(data), "--model", "yolov3-tiny", "--weights",
               str(tiny_weights), "--out", str(out), "--workers", "1", "--batch-size", "2"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["AP50"] == pytest.approx(1.0)
    assert set(STAT_NAMES) <= metrics.keys()
    assert {c["id"]: c["AP50"] for c in metrics["per_class"]} == {4: pytest.approx(1.0),
                                                                  47: pytest.approx(1.0)}
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions and {p["category_id"] for p in predictions} <= {4, 47}
    assert set(predictions[0]) == {"image_id", "category_id", "bbox", "score"}
    assert (out / "pr_curve.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "AP50  AP  @[IoU=0.50      | area=   all | maxDets=100] = 1.000" in printed
    assert "motorcycle" in printed and "cup" in printed and "images/s" in printed


def test_val_reports_bad_labels_or_stops_with_strict(tiny_weights: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "yolo"
    write_yolo(root)
    label = root / "labels" / "val" / "1.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.2\n")
    names = tmp_path / "names.txt"  # the model's 80 classes, named so that some are the dataset's
    names.write_text("\n".join(["cat", "dog", "zebra", *(f"c{k}" for k in range(77))]))
    args = ["val", "--data", str(root / "data.yaml"), "--model", "yolov3-tiny", "--weights",
            str(tiny_weights), "--img-size", "128", "--names", str(names), "--workers", "0",
            "--out", str(tmp_path / "out")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 problem(s) in the dataset" in printed and "1.txt:3: expected 5 fields" in printed
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["per_class"]
    assert main([*args, "--strict"]) == 1
    assert "1.txt:3: expected 5 fields (class xc yc w h), found 4" in capsys.readouterr().err


def test_val_errors_name_the_file(tiny_weights: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["val", "--data", str(bad), "--model", "yolov3-tiny", "--weights",
                 str(tiny_weights)]) == 1
    assert f"{bad}: not a COCO annotation file" in capsys.readouterr().err
    assert main(["val", "--data", str(bad), "--img-size", "100"]) == 1
    assert "not a multiple of 32" in capsys.readouterr().err
