"""yolov3.run_folders: every command that writes results has a folder of its own, numbered
like train's, and a live run keeps a second one out of its folder."""

from __future__ import annotations

import json
from pathlib import Path

from data_factory import write_yolo
from yolov3.cli.main import main
from yolov3.fileio import FolderLock


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_detect_keeps_every_file_of_the_first(photos, tmp_path, monkeypatch,
                                                       capsys) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["detect", str(photos["coffee"]), "--weights", "yolov3-tiny"]
    assert main(args) == 0
    first = snapshot(tmp_path / "runs" / "detect")
    assert "detections.json" in first
    assert main(args) == 0
    assert snapshot(tmp_path / "runs" / "detect") == first
    assert json.loads((tmp_path / "runs" / "detect2" / "detections.json").read_text())
    capsys.readouterr()
    # A named --out that holds a run is refused, then replaced with --overwrite.
    assert main([*args, "--out", "runs/detect"]) == 1
    assert "holds an earlier run (detections.json)" in capsys.readouterr().err
    assert main([*args, "--out", "runs/detect", "--overwrite"]) == 0


def test_a_live_run_keeps_a_second_one_out_of_its_folder(photos, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lock = FolderLock(out, ".detect.lock")
    lock.acquire()  # a detect run writing there now
    try:
        code = main(["detect", str(photos["coffee"]), "--weights", "yolov3-tiny", "--out",
                     str(out)])
    finally:
        lock.release()
    assert code == 1
    assert str(out) in capsys.readouterr().err
    assert not (out / "detections.json").exists()


def test_val_and_export_number_their_folders(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = write_yolo(tmp_path / "data")
    val = ["val", "--data", str(data), "--weights", "yolov3-tiny", "--img-size", "128"]
    assert main(val) == 0 and main(val) == 0
    assert (tmp_path / "runs/val/predictions.json").is_file()
    assert (tmp_path / "runs/val2/predictions.json").is_file()
    export = ["export", "--weights", "yolov3-tiny", "--img-size", "128"]
    assert main(export) == 0 and main(export) == 0
    assert (tmp_path / "runs/export/yolov3-tiny.onnx").is_file()
    assert (tmp_path / "runs/export2/yolov3-tiny.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]  # nothing in the cwd
