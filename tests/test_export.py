"""ONNX and TorchScript exports run elsewhere and give PyTorch's outputs and detections."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

import yolov3
from yolov3.cli.main import main
from yolov3.errors import YoloError
from yolov3.export import DetectionGraph, export_onnx, export_torchscript
from yolov3.images import letterbox
from yolov3.inference import DetectOptions, Detector
from yolov3.inference.fast import fold_batch_norm
from yolov3.inference.onnx_backend import OnnxDetector, OnnxRuntimeModel
from yolov3.model import Decoded

AT_320 = DetectOptions(img_size=320)


@pytest.fixture(scope="module")
def batch(images) -> torch.Tensor:
    return torch.stack([letterbox(im, (320, 320))[0] for im in images])


@pytest.fixture(scope="module")
def exports(tiny, tmp_path_factory) -> dict[str, Path]:
    """The graphs the tests share: exporting yolov3-tiny takes a second or two each."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        "static": export_onnx(tiny, folder / "static.onnx", AT_320, batch=3),
        "dynamic": export_onnx(tiny, folder / "dynamic.onnx", AT_320, dynamic=True),
        "nms": export_onnx(tiny, folder / "nms.onnx", AT_320, include_nms=True,
                           dynamic=True),
    }


def plain(model: yolov3.YOLOv3, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return Decoded(model.eval())(x)


def assert_same_detections(found: list, expected: list) -> None:
    assert [d.labels.tolist() for d in found] == [d.labels.tolist() for d in expected]
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)


def test_static_graph_equals_pytorch(tiny, batch, exports) -> None:
    graph = onnx.load(exports["static"])
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["images"]
    model = OnnxRuntimeModel(exports["static"], num_threads=1)
    assert model.session.get_inputs()[0].shape == [3, 3, 320, 320]
    assert model.session.get_session_options().intra_op_num_threads == 1
    torch.testing.assert_close(model(batch), plain(tiny, batch), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 3, 256, 320), (2, 3, 320, 224)])
def test_dynamic_graph_takes_other_batches_and_sizes(tiny, exports, shape) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    got = OnnxRuntimeModel(exports["dynamic"])(x)
    torch.testing.assert_close(got, plain(tiny, x), rtol=1e-4, atol=1e-4)


def test_onnxruntime_detector_gives_the_pytorch_detections(tiny, images, exports) -> None:
    expected = Detector(tiny, AT_320).detect(images)
    assert 41 in expected[0].labels.tolist()  # the cup, so the comparison is not vacuous
    assert_same_detections(OnnxDetector(exports["dynamic"], AT_320).detect(images), expected)
    single = AT_320.replace(multi_label=False)
    expected = Detector(tiny, single).detect(images)
    found = OnnxDetector(exports["dynamic"], single).detect(images)
    assert_same_detections(found, expected)


def test_nms_in_the_graph_gives_the_pytorch_detections(tiny, images, batch, exports) -> None:
    for conf in (0.25, 0.05):  # few detections, and many with suppressed overlaps
        expected = Detector(tiny, AT_320.replace(conf=conf)).detect(images)
        found = OnnxDetector(exports["nms"], AT_320.replace(conf=conf)).detect(images)
        assert_same_detections(found, expected)
    assert sum(len(d) for d in found) > 10
    # The PyTorch side of the custom op gives the ONNX op's rows, in the same order.
    thresholds = torch.tensor([0.05]), torch.tensor([0.45])
    rows = OnnxRuntimeModel(exports["nms"])(batch, *thresholds)
    with torch.no_grad():
        eager = DetectionGraph(Decoded(fold_batch_norm(tiny)))(batch, *thresholds)
    torch.testing.assert_close(rows, eager, rtol=1e-4, atol=1e-3)
    assert rows[:, 0].tolist() == sorted(rows[:, 0].tolist())  # grouped by image


def test_nms_graph_refuses_single_label(exports) -> None:
    with pytest.raises(YoloError, match="single-label"):
        OnnxDetector(exports["nms"], AT_320.replace(multi_label=False))


def test_half_graph_takes_float16(tiny, batch, tmp_path) -> None:
    half = AT_320.replace(precision="fp16")
    model = OnnxRuntimeModel(export_onnx(tiny, tmp_path / "half.onnx", half, batch=3))
    assert model.session.get_inputs()[0].type == "tensor(float16)"
    got, expected = model(batch), plain(tiny, batch)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[..., 4:], expected[..., 4:], rtol=0, atol=0.02)
    # The boxes (input pixels, up to 320): float16 spaces its values 0.125 to 0.25 apart
    # between 128 and 512, and w, h = anchor x exp(logit) turns a logit's rounding into a
    # relative error of the size (measured: at most 0.75 px over all 4,500 rows, 0.2 px on the
    # rows of objectness above 0.1).
    torch.testing.assert_close(got[..., :4], expected[..., :4], rtol=0, atol=1.5)
    confident = expected[..., 4] > 0.1
    assert confident.sum() > 5
    torch.testing.assert_close(got[..., :4][confident], expected[..., :4][confident], rtol=0,
                               atol=0.5)


def test_torchscript_equals_pytorch(tiny, batch, tmp_path) -> None:
    path = export_torchscript(tiny, tmp_path / "tiny.torchscript", AT_320, batch=3)
    with pytest.warns(FutureWarning):  # torch.jit.load's deprecation notice
        loaded = torch.jit.load(path)
    torch.testing.assert_close(loaded(batch), plain(tiny, batch), rtol=1e-4, atol=1e-4)


def test_size_must_be_a_multiple_of_32(tiny, tmp_path) -> None:
    with pytest.raises(YoloError, match="img_size 300 is not a multiple of 32"):
        export_onnx(tiny, tmp_path / "x.onnx", DetectOptions(img_size=300))
    with pytest.raises(YoloError, match=r"export_onnx takes its detection settings as one "
                       r"DetectOptions, such as DetectOptions\(img_size=416, conf=0.25\); got 320"):
        export_onnx(tiny, tmp_path / "x.onnx", 320)  # the size where it was passed before
    assert not (tmp_path / "x.onnx").exists()


def test_unloadable_graph_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a graph")
    with pytest.raises(YoloError, match=r"broken\.onnx"):
        OnnxRuntimeModel(path)


def test_export_and_detect_commands(tiny_weights, photos, tmp_path, capsys) -> None:
    out = tmp_path / "tiny.onnx"
    code = main(["export", "--model", "yolov3-tiny", "--weights", str(tiny_weights),
                 "--img-size", "320", "--include-nms", "--out", str(out)])
    assert code == 0 and "onnx model written" in capsys.readouterr().out
    graph = onnx.load(out)
    assert [o.name for o in graph.graph.output] == ["detections"]
    assert "NonMaxSuppression" in {n.op_type for n in graph.graph.node}
    assert main(["export", "--model", "yolov3-tiny", "--format", "torchscript", "--dynamic",
                 "--out", str(tmp_path / "x")]) == 1
    assert "ONNX options" in capsys.readouterr().err

    found = {}
    for backend in ("torch", "onnxruntime"):
        folder = tmp_path / backend
        assert main(["detect", str(photos["coffee"]), "--model", "yolov3-tiny", "--weights",
                     str(tiny_weights), "--backend", backend, "--precision", "fp32",
                     "--out", str(folder)]) == 0
        found[backend] = json.loads((folder / "detections.json").read_text())
    assert found["torch"] == found["onnxruntime"]
    assert found["torch"][0]["category_name"] == "cup"
