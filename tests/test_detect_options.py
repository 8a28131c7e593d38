"""``DetectOptions``: the detection settings as one checked value. It refuses what the command
line refuses, in the same words; its defaults are the commands' defaults; and ``Detector``,
``make_detector``, ``export_onnx`` and ``evaluate`` take it and nothing else."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MICRO3_CFG
from yolov3.backends import make_detector
from yolov3.checks import check_img_size
from yolov3.cli.main import build_parser, main
from yolov3.errors import YoloError
from yolov3.evaluation import evaluate
from yolov3.inference import DetectOptions, Detector
from yolov3.model.cfg import parse_cfg_text
from yolov3.model.network import build_model

# Values refused, with the words that say why.
REFUSED = [
    ({"conf": math.nan}, "conf must be in [0, 1] (a score threshold: objectness x class "
     "probability), got nan"),
    ({"conf": 1.5}, "conf must be in [0, 1] (a score threshold: objectness x class "
     "probability), got 1.5"),
    ({"conf": -1}, "conf must be in [0, 1]"),
    ({"conf": math.inf}, "got inf"),
    ({"conf": "0.5"}, "conf must be a number in [0, 1], got '0.5'"),
    ({"iou": 2.0}, "iou must be in [0, 1] (the overlap above which the per-class NMS drops "
     "the weaker box), got 2"),
    ({"iou": math.nan}, "iou must be in [0, 1]"),
    ({"max_det": -1}, "max_det must be at least 1, got -1"),
    ({"max_det": 0}, "max_det must be at least 1, got 0"),
    ({"max_det": 2.5}, "max_det must be a whole number, got 2.5"),
    ({"img_size": 100}, "img_size 100 is not a multiple of 32 greater than 0"),
    ({"img_size": 0}, "img_size 0 is not a multiple of 32"),
    ({"img_size": 8192}, "img_size 8192 is above the largest accepted, 4096"),
    ({"img_size": (416, 33)}, "img_size 33 is not a multiple of 32"),
    ({"img_size": (416, 416, 3)}, "img_size (416, 416, 3): expected one side or (height, "
     "width)"),
    ({"img_size": 416.0}, "img_size 416.0: expected a whole number of pixels"),
    ({"multi_label": 1}, "multi_label must be True or False, got 1"),
    ({"precision": "int4"}, "unknown precision 'int4' (known: auto, fp32, bf16, fp16, int8)"),
    ({"backend": "tensorflow"}, "unknown backend 'tensorflow' (known: torch, onnxruntime)"),
    ({"precision": "int8"}, "int8 is calibrated on images like those the model will see"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSED, ids=[str(f) for f, _ in REFUSED])
def test_refused_values_say_why(fields, message) -> None:
    with pytest.raises(YoloError) as refused:
        DetectOptions(**fields)
    assert message in str(refused.value)


def test_calibration_images_only_with_int8() -> None:
    from yolov3.inference.quantize import calibration_images

    calib = calibration_images([np.zeros((32, 32, 3), np.uint8)] * 2)
    with pytest.raises(YoloError, match="calibration images are for int8 inference, not fp32"):
        DetectOptions(calib=calib)
    assert DetectOptions(precision="int8", calib=calib).calib is calib


def test_accepted_values_are_kept_in_one_form() -> None:
    options = DetectOptions(img_size=[320, 416], conf=0, iou=1, max_det=np.int64(5))
    assert options.img_size == (320, 416) and options.conf == 0.0 and options.iou == 1.0
    assert type(options.conf) is float and type(options.max_det) is int and options.max_det == 5
    assert DetectOptions(img_size=np.int64(416)).img_size == 416
    with pytest.raises(AttributeError):  # frozen: a detector's settings do not change under it
        options.conf = 0.5  # type: ignore[misc]
    # replace() checks again
    with pytest.raises(YoloError, match="conf must be in"):
        options.replace(conf=2)


def test_defaults_are_the_commands_defaults() -> None:
    detect = DetectOptions()
    assert (detect.img_size, detect.conf, detect.iou, detect.multi_label, detect.max_det,
            detect.precision, detect.backend, detect.calib) == (
        None, 0.25, 0.45, True, 300, "fp32", "torch", None)
    val = DetectOptions.for_evaluation()
    assert (val.conf, val.iou, val.multi_label, val.precision) == (0.005, 0.45, True, "fp32")
    assert DetectOptions.for_evaluation(img_size=608, conf=0.001) == DetectOptions(
        img_size=608, conf=0.001)
    parser = build_parser()
    args = parser.parse_args(["detect", "x.jpg"])
    assert (args.conf, args.iou, args.max_det, args.backend, args.single_label) == (
        detect.conf, detect.iou, detect.max_det, detect.backend, not detect.multi_label)
    args = parser.parse_args(["val", "--data", "d.yaml"])
    assert (args.conf, args.iou) == (val.conf, val.iou)


@pytest.mark.parametrize(("option", "field"), [("--conf", "conf"), ("--iou", "iou")])
@pytest.mark.parametrize("text", ["1.5", "-1", "nan", "inf", "-0.1", "2", "0", "1", "0.25",
                                  "1e-3"])
def test_cli_and_api_refuse_the_same_thresholds(option, field, text, capsys) -> None:
    try:
        build_parser().parse_args(["detect", "x.jpg", option, text])
        cli = None
    except SystemExit:
        cli = capsys.readouterr().err.splitlines()[-1]
    try:
        DetectOptions(**{field: float(text)})
        api = None
    except YoloError as exc:
        api = str(exc)
    assert (cli is None) == (api is None), (cli, api)
    if api is not None:  # the same words after the name
        assert cli.endswith(api.removeprefix(field + " ")), (cli, api)


@pytest.mark.parametrize("text", ["0", "-1", "1", "300"])
def test_cli_and_api_refuse_the_same_max_det(text, capsys) -> None:
    try:
        build_parser().parse_args(["detect", "x.jpg", "--max-det", text])
        cli = None
    except SystemExit:
        cli = capsys.readouterr().err.splitlines()[-1]
    try:
        DetectOptions(max_det=int(text))
        api = None
    except YoloError as exc:
        api = str(exc)
    assert (cli is None) == (api is None)
    if api is not None:
        assert cli.endswith(api.removeprefix("max_det "))


@pytest.mark.parametrize("text", ["0", "100", "4128", "32", "4096", "384x256", "384x250"])
def test_cli_and_api_refuse_the_same_img_size(text) -> None:
    size = build_parser().parse_args(["detect", "x.jpg", "--img-size", text]).img_size
    try:
        check_img_size(size)  # what every command does with --img-size first
        cli = None
    except YoloError as exc:
        cli = str(exc)
    try:
        DetectOptions(img_size=size)
        api = None
    except YoloError as exc:
        api = str(exc)
    assert (cli is None) == (api is None)
    if api is not None:
        assert cli.removeprefix("--img-size") == api.removeprefix("img_size")


def test_the_commands_build_their_options_with_the_same_checks(tmp_path, capsys) -> None:
    (tmp_path / "micro.cfg").write_text(MICRO3_CFG)
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 50, 3), 127, np.uint8)).save(photo)
    code = main(["detect", str(photo), "--model", str(tmp_path / "micro.cfg"), "--weights",
                 "none", "--img-size", "64", "--precision", "int8", "--out",
                 str(tmp_path / "out")])
    assert code == 1
    assert "int8 is calibrated on images like those the model will see (a few dozen): give " \
           "them with --calib DATASET|FOLDER" in capsys.readouterr().err


@pytest.fixture(scope="module")
def micro():
    return build_model(parse_cfg_text(MICRO3_CFG)).eval()


def test_detector_refuses_what_the_cli_refuses(micro) -> None:
    for fields in ({"conf": math.nan}, {"conf": 1.5}, {"iou": -0.1}, {"max_det": -1}):
        with pytest.raises(YoloError) as refused:
            Detector(micro, DetectOptions(**fields))
        name, value = next(iter(fields.items()))
        assert str(refused.value).startswith(f"{name} must be")
        assert str(refused.value).endswith(f"got {value:g}")


@pytest.mark.parametrize("call", [
    lambda m: Detector(m, 416),
    lambda m: make_detector(m, 416),
    lambda m: evaluate(m, None, 416),
])
def test_settings_passed_the_old_way_are_a_clear_error(micro, call) -> None:
    with pytest.raises(YoloError, match=r"takes its detection settings as one DetectOptions, "
                       r"such as DetectOptions\(img_size=416, conf=0.25\); got 416"):
        call(micro)


def test_a_plain_detector_runs_fp32_on_torch_only(micro) -> None:
    with pytest.raises(YoloError, match="Detector runs the model as it is, in fp32 on torch; "
                       "for precision bf16 on torch build the engine with "
                       r"yolov3.backends.make_detector\(model, options\)"):
        Detector(micro, DetectOptions(precision="bf16"))
    with pytest.raises(YoloError, match="for precision fp32 on onnxruntime"):
        Detector(micro, DetectOptions(backend="onnxruntime"))


def test_no_img_size_is_the_networks_own(micro, tiny) -> None:
    assert Detector(micro).input_hw == (64, 64)
    assert Detector(tiny).input_hw == (416, 416)  # yolov3-tiny.cfg's [net] width x height
    assert make_detector(micro).input_hw == (64, 64)
    assert Detector(micro, DetectOptions(img_size=(96, 128))).input_hw == (96, 128)
    # a network that does not carry a cfg must be told its size
    with pytest.raises(YoloError, match=r"img_size: this network \(Sequential\) does not say"):
        Detector(torch.nn.Sequential())


def test_make_detector_keeps_the_options(micro) -> None:
    options = DetectOptions(img_size=96, conf=0.5, iou=0.3, multi_label=False, max_det=7)
    detector = make_detector(micro, options)
    assert detector.options == options and detector.input_hw == (96, 96)
    assert detector.precision == "fp32"
    auto = make_detector(micro, options.replace(precision="auto"))
    assert auto.precision in ("fp32", "bf16")


def test_onnx_detector_reads_its_size_from_a_static_graph(micro, tmp_path: Path) -> None:
    from yolov3.export import export_onnx
    from yolov3.inference.onnx_backend import OnnxDetector

    static = export_onnx(micro, tmp_path / "s.onnx", DetectOptions(img_size=(64, 96)))
    assert OnnxDetector(static).input_hw == (64, 96)
    dynamic = export_onnx(micro, tmp_path / "d.onnx", dynamic=True)
    with pytest.raises(YoloError, match=r"d\.onnx: the graph takes any input size; give "
                       r"DetectOptions\(img_size=...\)"):
        OnnxDetector(dynamic)
    assert OnnxDetector(dynamic, DetectOptions(img_size=128)).input_hw == (128, 128)
