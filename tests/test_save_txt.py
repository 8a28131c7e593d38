"""``yolov3 detect --save-txt``: YOLO label files that open as a dataset with yolov3's own
reader and hold detections.json's boxes; --save-conf, --classes and --max-det; earlier
outputs replaced, other people's files never touched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset


@pytest.fixture
def inputs(photos, tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["coffee"], folder / "coffee.png")
    shutil.copy(photos["motorcycle_left"], folder / "moto.png")
    return folder


def detect(*args: object) -> int:
    return main(["detect", *map(str, args), "--weights", "yolov3-tiny", "--precision", "fp32"])


def records_of(out: Path) -> list[dict]:
    return json.loads((out / "detections.json").read_text())


def xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def test_labels_open_as_a_dataset_with_the_detections(inputs, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"
    assert detect(inputs, "--save-txt", "--conf", "0.1", "--out", out) == 0
    records = records_of(out)
    assert len(records) >= 3
    for split in ("val", "train"):  # what yolov3 val and yolov3 train read
        dataset = open_dataset(out, split)
        assert not dataset.problems
        assert [p.name for p in dataset.files] == ["coffee.png", "moto.png"]
        assert len(dataset.names) == 80 and dataset.names[41] == "cup"
        for i, file in enumerate(dataset.files):
            assert file.resolve() == (inputs / file.name).resolve()  # the source image
            ann = dataset.annotations(i)
            mine = [r for r in records if Path(r["file_name"]).name == file.name]
            assert ann.labels.tolist() == [r["category_id"] for r in mine]
            np.testing.assert_allclose(ann.boxes, [xyxy(r["bbox"]) for r in mine],
                                       rtol=1e-3, atol=0.01)
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["coffee.txt", "moto.txt"]
    val = tmp_path / "val"  # yolov3 val of the same model on its own detections: all found
    assert main(["val", "--data", str(out), "--weights", "yolov3-tiny", "--precision", "fp32",
                 "--workers", "0", "--out", str(val)]) == 0
    metrics = json.loads((val / "metrics.json").read_text())
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP"] > 0.99


def test_save_conf_appends_the_score(inputs, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"
    assert detect(inputs / "coffee.png", "--save-txt", "--save-conf", "--out", out) == 0
    rows = np.loadtxt(out / "labels" / "coffee.txt", ndmin=2)
    records = records_of(out)
    assert rows.shape == (len(records), 6)
    np.testing.assert_allclose(rows[:, 5], [r["score"] for r in records], atol=1e-5)
    assert not (out / "data.yaml").exists()  # six fields: not a dataset the reader takes


def test_save_conf_needs_save_txt(inputs, tmp_path, capsys) -> None:
    assert detect(inputs, "--save-conf", "--out", tmp_path / "out") == 1
    assert "give --save-txt too" in capsys.readouterr().err


def test_classes_and_max_det_filter(inputs, tiny_weights, tmp_path, capsys) -> None:
    assert detect(inputs, "--conf", "0.05", "--out", tmp_path / "all") == 0
    every = records_of(tmp_path / "all")
    assert len({r["category_name"] for r in every}) > 2  # more classes than those kept
    for keep in ("cup,motorbike", "41, motorbike"):
        out = tmp_path / keep.replace(",", "_").replace(" ", "")
        assert detect(inputs, "--conf", "0.05", "--classes", keep, "--out", out) == 0
        assert records_of(out) == [r for r in every if r["category_name"] in ("cup", "motorbike")]
    one = tmp_path / "one"
    assert detect(inputs, "--conf", "0.05", "--max-det", "1", "--save-txt", "--out", one) == 0
    firsts = {}
    for r in every:
        firsts.setdefault(r["file_name"], r)
    assert records_of(one) == list(firsts.values())  # the best of each image
    assert all(len(np.loadtxt(p, ndmin=2)) == 1 for p in (one / "labels").iterdir())
    capsys.readouterr()
    assert detect(inputs, "--classes", "cup,teapot", "--out", tmp_path / "bad") == 1
    err = capsys.readouterr().err
    assert "--classes cup,teapot: 'teapot' is not a class of the model" in err
    assert "0 person, 1 bicycle" in err and "79 toothbrush" in err


def test_names_file_names_the_classes(inputs, tiny_weights, tmp_path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing{k}\n" for k in range(80)))
    out = tmp_path / "out"
    assert detect(inputs / "coffee.png", "--names", names, "--classes", "thing41", "--out",
                  out) == 0
    records = records_of(out)
    assert records and {r["category_name"] for r in records} == {"thing41"}


def test_a_second_run_replaces_the_labels(inputs, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"
    assert detect(inputs, "--save-txt", "--nosave", "--out", out) == 0
    assert detect(inputs / "moto.png", "--save-txt", "--nosave", "--out", out, "--overwrite") == 0
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["moto.txt"]
    assert [p.name for p in open_dataset(out).files] == ["moto.png"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "data.yaml", "detections.json", "detections.jsonl", "images", "labels"]


def test_folders_it_did_not_write_are_left_alone(inputs, tiny_weights, tmp_path,
                                                 capsys) -> None:
    out = tmp_path / "mine"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "coffee.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    assert detect(inputs, "--save-txt", "--out", out) == 1
    assert "holds an images/, labels/ or data.yaml that yolov3 detect did not write" in \
        capsys.readouterr().err
    assert (out / "labels" / "coffee.txt").read_text() == "0 0.5 0.5 0.2 0.2\n"
    assert sorted(p.name for p in out.iterdir()) == ["labels"]
