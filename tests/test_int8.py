"""int8 inference: calibration images, the quantised graph, and its detections against fp32's
on real photos (yolov3-tiny's official weights); the accuracy bar on COCO is the slow test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from yolov3.backends import make_detector
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.errors import DataError, YoloError
from yolov3.evaluation import evaluate
from yolov3.export import export_onnx, export_torchscript
from yolov3.images import letterbox
from yolov3.inference import DetectOptions
from yolov3.inference.onnx_backend import OnnxDetector
from yolov3.inference.quantize import (
    FLOAT_FIRST_CONVS,
    CalibrationFeeds,
    calibration_images,
    quantized_nodes,
)
from yolov3.model import Decoded

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "coco128-train"


@pytest.fixture(scope="module")
def calib_folder(photos, tmp_path_factory) -> Path:
    """Twelve real photos as JPEGs in nested folders: the three photos at four crops each."""
    folder = tmp_path_factory.mktemp("calib")
    for k, name in enumerate(sorted(photos)):
        image = Image.open(photos[name]).convert("RGB")
        w, h = image.size
        for j in range(4):
            crop = image.crop((j * w // 8, j * h // 8, w - j * w // 16, h))
            (folder / name).mkdir(exist_ok=True)
            crop.save(folder / name / f"{k}{j}.jpg", quality=92)
    return folder


def same_objects(found, expected, box_px: float, score: float, top: int = 3) -> None:
    """The ``top`` most confident fp32 detections of each image are found again by int8: the
    same class, a box within ``box_px`` pixels and a score within ``score``."""
    for f, e in zip(found, expected, strict=True):
        assert len(e) >= 1
        for box, s, label in zip(e.boxes[:top], e.scores[:top], e.labels[:top], strict=True):
            same = f.labels == label
            assert same.any(), f"class {label} not found by int8"
            gap = (f.boxes[same] - box).abs().amax(dim=1)
            k = int(gap.argmin())
            assert gap[k] < box_px
            assert abs(float(f.scores[same][k] - s)) < score


def test_calibration_images_from_a_folder_a_dataset_and_arrays(calib_folder, kangaroo_dir,
                                                               images) -> None:
    picked = calibration_images(calib_folder, 5)
    assert len(picked) == 5 and picked.picks.tolist() == [0, 3, 6, 8, 11]  # evenly spaced
    assert picked[1].shape[2] == 3 and picked[1].dtype == np.uint8
    everything = calibration_images(calib_folder, 100)
    assert len(everything) == 12  # no more than there are
    kangaroo = calibration_images(kangaroo_dir, 8)
    train = open_dataset(kangaroo_dir, "train")
    assert "train split" in kangaroo.source and len(kangaroo) == 8
    np.testing.assert_array_equal(kangaroo[7], train.pixels[len(train) - 1])
    assert len(calibration_images(images, 2)) == 2


def test_bad_calibration_sources_are_clear_errors(tmp_path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such file or folder.*--calib takes"):
        calibration_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no calibration images there"):
        calibration_images(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    for k in range(2):
        (tmp_path / "broken" / f"{k}.jpg").write_bytes(b"not a picture")
    with pytest.raises(DataError, match=r"0 of the 2 calibration images could be read"):
        CalibrationFeeds(calibration_images(tmp_path / "broken"), "images", (64, 64))
    with pytest.raises(YoloError, match="at least 1"):
        calibration_images(tmp_path / "broken", 0)


def test_int8_needs_calibration_images_and_the_cpu(tiny, images) -> None:
    with pytest.raises(YoloError, match=r"--calib DATASET\|FOLDER"):
        DetectOptions(precision="int8")
    calib = calibration_images(images)
    with pytest.raises(YoloError, match="runs on the CPU"):
        make_detector(tiny, DetectOptions(precision="int8", calib=calib), device="cuda")
    with pytest.raises(YoloError, match="calibration images are for int8"):
        DetectOptions(precision="fp32", calib=calib)


def test_the_network_is_int8_up_to_its_heads(tiny, calib_folder, tmp_path) -> None:
    fp32 = onnx.load(export_onnx(tiny, tmp_path / "fp32.onnx", DetectOptions(img_size=320),
                                dynamic=True))
    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    chosen = quantized_nodes(fp32)
    heads = {"/net/layers.15/conv/Conv", "/net/layers.22/conv/Conv"}  # before the [yolo] layers
    assert [c for c in convs if c not in chosen] == [*convs[:FLOAT_FIRST_CONVS], *sorted(heads)]
    assert all(n.startswith("/net/layers.") for n in chosen)  # no decoding node
    assert {n.split("/")[-1].rstrip("_0123456789") for n in chosen} == {
        "Conv", "LeakyRelu", "Concat", "Resize"}
    int8 = onnx.load(export_onnx(tiny, tmp_path / "int8.onnx", DetectOptions(
        img_size=320, precision="int8", calib=calibration_images(calib_folder, 4)), dynamic=True))
    stored = {t.name: t.data_type for t in int8.graph.initializer}
    dequantized = {n.output[0]: n.input[0] for n in int8.graph.node
                   if n.op_type == "DequantizeLinear"}
    weights = [n.input[1] for n in int8.graph.node if n.op_type == "Conv"]
    int8_weights = [stored[dequantized[w]] for w in weights if w in dequantized]
    assert int8_weights == [onnx.TensorProto.INT8] * (len(convs) - FLOAT_FIRST_CONVS - 2)
    assert [o.name for o in int8.graph.output] == ["output"]


def test_int8_detections_are_fp32_detections_on_real_photos(tiny, images, calib_folder) -> None:
    """Calibrated on twelve crops of the photos: the objects fp32 finds most confidently (a
    cup, a motorbike, a bottle...) are found in int8 with boxes a few pixels away (measured: at
    most 6.4 px, on boxes 75 to 650 px wide) and scores within 0.08 (measured 0.05)."""
    options = DetectOptions(img_size=416, conf=0.1)
    fp32 = make_detector(tiny, options).detect(images)
    detector = make_detector(tiny, options.replace(precision="int8",
                                                   calib=calibration_images(calib_folder)))
    assert detector.precision == "int8" and isinstance(detector, OnnxDetector)
    int8 = detector.detect(images)
    assert [int(d.labels[0]) for d in fp32] == [41, 3, 39]
    same_objects(int8, fp32, box_px=8, score=0.08)


def test_export_int8_with_nms_runs_in_onnx_runtime(tiny_weights, tiny, images, calib_folder,
                                                   tmp_path, capsys) -> None:
    out = tmp_path / "tiny-int8.onnx"
    assert main(["export", "--model", "yolov3-tiny", "--weights", str(tiny_weights),
                 "--img-size", "416", "--dynamic", "--include-nms", "--precision", "int8",
                 "--calib", str(calib_folder), "--calib-images", "8", "--out", str(out)]) == 0
    assert "(int8," in capsys.readouterr().out
    graph = onnx.load(out)
    assert {"QuantizeLinear", "NonMaxSuppression"} <= {n.op_type for n in graph.graph.node}
    options = DetectOptions(img_size=416, conf=0.1)
    found = OnnxDetector(out, options).detect(images)
    same_objects(found, make_detector(tiny, options).detect(images),
                 box_px=8, score=0.08)


def test_export_precision_errors_say_what_to_use(tiny_weights, calib_folder, tmp_path,
                                                 capsys) -> None:
    base = ["export", "--model", "yolov3-tiny", "--weights", str(tiny_weights),
            "--out", str(tmp_path / "x.onnx")]
    cases = {
        ("--precision", "bf16"): "ONNX Runtime has no bfloat16 convolution",
        ("--precision", "int8"): "--calib DATASET|FOLDER",
        ("--format", "torchscript", "--precision", "int8", "--calib", str(calib_folder)):
            "export --format onnx",
        ("--half", "--precision", "int8", "--calib", str(calib_folder)):
            "--half is the fp16 precision; it cannot be combined with --precision int8",
        ("--calib", str(calib_folder)): "--calib calibrates int8 inference",
    }
    for extra, message in cases.items():
        assert main([*base, *extra]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_bf16_torchscript_takes_bfloat16_and_keeps_the_scores(tiny, images, tmp_path) -> None:
    path = export_torchscript(tiny, tmp_path / "tiny.torchscript",
                              DetectOptions(img_size=320, precision="bf16"))
    with pytest.warns(FutureWarning):  # torch.jit.load's deprecation notice
        loaded = torch.jit.load(path)
    x = letterbox(images[0], (320, 320))[0][None]
    got = loaded(x.bfloat16())
    with torch.no_grad():
        expected = Decoded(tiny.eval())(x)
    assert got.dtype == torch.float32  # decoded in float32
    score = got[..., 4:5] * got[..., 5:]
    assert (score - expected[..., 4:5] * expected[..., 5:]).abs().max() < 0.01


def test_detect_in_int8_from_the_command_line(tiny_weights, photos, calib_folder, tmp_path,
                                              capsys) -> None:
    args = ["detect", str(photos["coffee"]), "--model", "yolov3-tiny", "--weights",
            str(tiny_weights), "--out", str(tmp_path / "out")]
    assert main([*args, "--precision", "int8", "--calib", str(calib_folder),
                 "--calib-images", "6"]) == 0
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert records[0]["category_name"] == "cup"
    capsys.readouterr()
    assert main([*args, "--precision", "int8", "--overwrite"]) == 1
    assert "int8 is calibrated on images" in capsys.readouterr().err
    assert main([*args, "--precision", "int8", "--calib", str(tmp_path / "missing"),
                 "--overwrite"]) == 1
    assert "missing: no such file or folder for the calibration images" in (
        capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.skipif(not COCO128.is_dir(), reason="shared/datasets/coco128-train is not here")
def test_int8_keeps_the_coco_ap50_of_fp32(tiny, tiny_weights, kangaroo_dir, tmp_path) -> None:
    """The issue's accuracy bar, on 128 real COCO photos with the official yolov3-tiny at 416:
    int8 AP50 within 0.01 of fp32's (0.424). Calibrated on 32 kangaroo photos, a set disjoint
    from the evaluated one, through ``yolov3 val``. (Over seven calibration sets, 16 to 128
    images of coco128 or of the kangaroos, int8's AP50 was 0.4155 to 0.4285.)"""
    fp32 = evaluate(tiny, open_dataset(COCO128 / "data.yaml", "train"),
                    DetectOptions.for_evaluation(img_size=416), progress=False)
    out = tmp_path / "val"
    assert main(["val", "--data", str(COCO128 / "data.yaml"), "--split", "train", "--model",
                 "yolov3-tiny", "--weights", str(tiny_weights), "--precision", "int8",
                 "--calib", str(kangaroo_dir), "--calib-images", "32", "--out", str(out)]) == 0
    int8 = json.loads((out / "metrics.json").read_text())
    assert 0.4 < fp32["AP50"] < 0.45
    assert abs(int8["AP50"] - fp32["AP50"]) <= 0.01
    assert abs(int8["AP"] - fp32["AP"]) <= 0.01
