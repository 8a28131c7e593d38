"""``yolov3 val`` end to end with the official yolov3-tiny weights on real photos."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MICRO3_CFG
from data_factory import NAMES, write_photo_dataset, write_yolo
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
    assert main([*args, "--strict", "--overwrite"]) == 1
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


# The first line of the table of COCO numbers (AP), as val prints it ("AP  AP  @[IoU=...") and
# as faster-coco-eval logs it ("Average Precision  (AP) @[ IoU=...").
AP_LINE = re.compile(r"AP\)? +@\[ ?IoU=0\.50:0\.95 \| area=   all \| maxDets=100 ?\]")


@pytest.mark.parametrize("debug", [False, True])
def test_val_prints_the_coco_table_once(debug: bool, tmp_path: Path) -> None:
    # A process of its own, as a user runs it: pytest's log capture would hide the logs.
    (tmp_path / "micro.cfg").write_text(MICRO3_CFG)
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    data = write_yolo(tmp_path / "yolo")
    argv = ["--debug"] * debug + [
        "val", "--data", str(data), "--model", str(tmp_path / "micro.cfg"), "--weights",
        "none", "--names", str(tmp_path / "names.txt"), "--img-size", "64", "--workers", "0",
        "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-m", "yolov3", *argv], capture_output=True,
                          text=True, env=os.environ, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(AP_LINE.findall(done.stdout)) == 1  # val's table
    # faster-coco-eval's own summary (its logger's INFO messages) only with --debug.
    assert len(AP_LINE.findall(done.stderr)) == debug
    assert ("faster_coco_eval" in done.stderr) == debug
