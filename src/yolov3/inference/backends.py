"""The engines a :class:`Detector` can run on: PyTorch (the fast path when it is exact) or
ONNX Runtime on a graph exported on the fly (quantised to int8 for ``precision="int8"``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from yolov3.choices import BACKENDS
from yolov3.errors import YoloError
from yolov3.inference.detector import Detector
from yolov3.inference.fast import FastModel, fast_if_exact
from yolov3.inference.precision import resolve_precision
from yolov3.inference.quantize import CalibrationImages
from yolov3.model.network import YOLOv3


def make_detector(
    model: YOLOv3,
    backend: str = "torch",
    img_size: int | tuple[int, int] = 416,
    conf_thresh: float = 0.25,
    iou_thresh: float = 0.45,
    multi_label: bool = True,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    calib: CalibrationImages | None = None,
) -> Detector:
    """A :class:`Detector` for ``model`` on ``backend``: ``torch`` runs the batch-norm-folded
    fast copy (the plain model if the copy is not exact to 1e-4) in ``precision`` (``auto``:
    bf16 where the hardware has it natively, see :mod:`yolov3.inference.precision`);
    ``onnxruntime`` exports the model to ONNX (any batch size) and runs it on the CPU in fp32
    (``auto`` is fp32 there). ``int8``, on either backend, is ONNX Runtime on the graph
    quantised and calibrated on ``calib`` (:func:`~yolov3.inference.quantize.calibration_images`;
    required for int8, refused otherwise). The detector's ``precision`` says what it runs in."""
    if backend not in BACKENDS:
        raise YoloError(f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
    if calib is not None and precision != "int8":
        raise YoloError(f"calibration images are for int8 inference, not {precision}: add "
                        "--precision int8 or leave out --calib")
    if precision == "int8":
        resolve_precision(precision, device)  # the CPU only
        return _onnx_detector(model, img_size, conf_thresh, iou_thresh, multi_label, "int8", calib)
    if backend == "torch":
        precision = resolve_precision(precision, device)
        engine = fast_if_exact(model.to(device), precision=precision)
        detector = Detector(engine, img_size, conf_thresh, iou_thresh, multi_label, device)
        detector.precision = precision if isinstance(engine, FastModel) else "fp32"
        return detector
    if torch.device(device).type != "cpu":
        raise YoloError("the onnxruntime backend runs on the CPU; use --device cpu")
    if precision not in ("fp32", "auto"):
        raise YoloError(f"the onnxruntime backend runs in fp32 or int8; {precision} runs on the "
                        "torch backend")
    return _onnx_detector(model, img_size, conf_thresh, iou_thresh, multi_label, "fp32")


def _onnx_detector(model: YOLOv3, img_size: int | tuple[int, int], conf_thresh: float,
                   iou_thresh: float, multi_label: bool, precision: str,
                   calib: CalibrationImages | None = None) -> Detector:
    """An :class:`OnnxDetector` on ``model`` exported (any batch size) to a temporary file in
    ``precision`` (``fp32``, or ``int8`` calibrated on ``calib``)."""
    from yolov3.export import export_onnx
    from yolov3.inference.onnx_backend import OnnxDetector

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", img_size, dynamic=True,
                           precision=precision, calib=calib)
        detector = OnnxDetector(path, img_size, conf_thresh, iou_thresh, multi_label)
    detector.precision = precision
    return detector
