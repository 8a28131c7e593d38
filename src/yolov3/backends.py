"""The engines a :class:`~yolov3.inference.Detector` runs on: PyTorch (the fast path when it is
exact) or ONNX Runtime on a graph exported on the fly (quantised to int8 for
``precision="int8"``).

This module sits above both :mod:`yolov3.inference` and :mod:`yolov3.export`: the ONNX Runtime
engine runs the model's export, and the export is of the inference network, so the two
packages depend one way (export on inference) and what needs both lives here."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from yolov3.errors import YoloError
from yolov3.export import export_onnx
from yolov3.inference.detector import Detector
from yolov3.inference.fast import FastModel, fast_if_exact
from yolov3.inference.onnx_backend import OnnxDetector
from yolov3.inference.options import DetectOptions, check_options
from yolov3.inference.precision import resolve_precision
from yolov3.model.network import YOLOv3


def make_detector(
    model: YOLOv3,
    options: DetectOptions = DetectOptions(),  # noqa: B008 - frozen, so shared safely
    device: str | torch.device = "cpu",
) -> Detector:
    """A :class:`Detector` for ``model`` as ``options`` ask, on ``device``.

    ``options.backend`` ``torch`` runs the batch-norm-folded fast copy (the plain model if the
    copy is not exact to 1e-4) in ``options.precision`` (``auto``: bf16 where the hardware has
    it natively, see :mod:`yolov3.inference.precision`); ``onnxruntime`` exports the model to
    ONNX (any batch size) and runs it on the CPU in fp32 (``auto`` is fp32 there). ``int8``, on
    either backend, is ONNX Runtime on the graph quantised and calibrated on
    ``options.calib``. The input size is ``options.img_size``, or the model's own. The
    detector's ``precision`` says what it runs in."""
    options = check_options(options, "make_detector").sized_for(model)
    if options.precision == "int8":
        resolve_precision(options.precision, device)  # the CPU only
        return _onnx_detector(model, options)
    if options.backend == "torch":
        precision = resolve_precision(options.precision, device)
        engine = fast_if_exact(model.to(device), precision=precision)
        detector = Detector(engine, options, device)
        detector.precision = precision if isinstance(engine, FastModel) else "fp32"
        return detector
    if torch.device(device).type != "cpu":
        raise YoloError("the onnxruntime backend runs on the CPU; use --device cpu")
    if options.precision not in ("fp32", "auto"):
        raise YoloError(f"the onnxruntime backend runs in fp32 or int8; {options.precision} "
                        "runs on the torch backend")
    return _onnx_detector(model, options.replace(precision="fp32"))


def _onnx_detector(model: YOLOv3, options: DetectOptions) -> Detector:
    """An :class:`OnnxDetector` on ``model`` exported (any batch size) to a temporary file in
    ``options.precision`` (``fp32``, or ``int8`` calibrated on ``options.calib``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", options, dynamic=True)
        detector = OnnxDetector(path, options)
    detector.precision = options.precision
    return detector
