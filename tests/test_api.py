"""yolov3.api: the YOLO object, run on real photos with the official yolov3-tiny, against the
lower-level API and the verbs' code it stands for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_factory import write_yolo
from yolov3 import YOLO, Results
from yolov3.errors import YoloError
from yolov3.images import load_image
from yolov3.inference import DetectOptions, Detector


@pytest.fixture(scope="module")
def model() -> YOLO:
    return YOLO("yolov3-tiny", device="cpu")


def test_a_file_gives_the_detectors_boxes(model, tiny, photos) -> None:
    results = model(photos["coffee"])
    assert len(results) == 1 and isinstance(results[0], Results)
    expected = Detector(tiny, DetectOptions()).detect([load_image(photos["coffee"])])[0]
    r = results[0]
    assert len(r) == len(expected) > 0
    np.testing.assert_allclose(r.boxes, expected.boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(r.scores, expected.scores.numpy(), atol=1e-5)
    assert r.labels.tolist() == expected.labels.tolist()
    assert r.names[r.labels[0]] == "cup" or r.names == model.names
    assert r.path == photos["coffee"] and r.image.shape[2] == 3


def test_paths_arrays_pil_images_and_folders_mix(model, photos, tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "astronaut"):
        shutil.copy(photos[name], folder / f"{name}.png")
    array = load_image(photos["motorcycle_left"])
    results = model([photos["coffee"], array, Image.fromarray(array), str(folder)],
                    conf=0.3)
    assert len(results) == 5
    assert [r.path.name if r.path else None for r in results] == [
        "coffee.png", None, None, "astronaut.png", "coffee.png"]
    np.testing.assert_allclose(results[1].boxes, results[2].boxes)
    np.testing.assert_allclose(results[0].boxes, results[4].boxes)
    assert all((r.scores > 0.3).all() for r in results)


def test_results_draw_save_and_serialise(model, photos, tmp_path) -> None:
    r = model(photos["coffee"])[0]
    picture = r.plot()
    assert picture.size == (r.image.shape[1], r.image.shape[0])
    path = r.save(tmp_path / "out")
    assert path == tmp_path / "out" / "coffee.png" and Image.open(path).size == picture.size
    records = json.loads(r.to_json())
    assert len(records) == len(r)
    assert records[0]["category_id"] == int(r.labels[0])
    assert records[0]["category_name"] == r.names[int(r.labels[0])]
    x, y, w, h = records[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], r.boxes[0], atol=0.01)


def test_bad_settings_and_sources_are_clear_errors(model, tmp_path) -> None:
    with pytest.raises(YoloError, match="conf must be in"):
        model(np.zeros((64, 64, 3), np.uint8), conf=1.5)
    with pytest.raises(YoloError, match="no such file or folder"):
        model(tmp_path / "missing.jpg")


def test_val_is_the_evaluation_of_the_verb(model, tmp_path) -> None:
    data = write_yolo(tmp_path / "data")
    metrics = model.val(data, img_size=128)
    assert 0 <= metrics["AP50"] <= 1 and "table" in metrics and metrics["images"] > 0


def test_export_writes_a_run_folder_never_over_the_weights(tiny_weights, tmp_path,
                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "tiny.weights"
    shutil.copy(tiny_weights, weights)
    model = YOLO(weights, device="cpu")
    with pytest.raises(YoloError, match="choose another --out"):
        model.export("onnx", out=weights)
    assert weights.read_bytes()[:20] == Path(tiny_weights).read_bytes()[:20]
    first, second = model.export("onnx", img_size=128), model.export("onnx", img_size=128)
    assert (first, second) == (Path("runs/export/tiny.onnx"), Path("runs/export2/tiny.onnx"))
    assert first.stat().st_size > 1e6 and second.stat().st_size > 1e6


def test_train_runs_the_trainer(micro_cfg, tmp_path) -> None:
    model = YOLO("none", cfg=micro_cfg, device="cpu")
    results = model.train(write_yolo(tmp_path / "data"), config="demo",
                          out=tmp_path / "run", max_iter=2, img_size=64, batch=2,
                          overrides=["optimizer.subdivisions=1", "multiscale.interval=0",
                                     "train.eval_interval=0", "schedule.steps=[]",
                                     "schedule.scales=[]", "schedule.burn_in=0"])
    assert results["iterations"] == 2 and (tmp_path / "run" / "last.pt").is_file()
