"""Export a network for other runtimes: ONNX (ONNX Runtime, TensorRT, OpenVINO...) and
TorchScript.

The exported graph is the batch-norm-folded network with darknet's decoding: input ``images``
(B, 3, H, W) in [0, 1], output ``output`` (B, N, 5+C) rows of cx, cy, w, h (input pixels),
objectness and class probabilities, as :class:`~yolov3.model.Decoded` gives. With ``include_nms``
the graph goes on to darknet's detection protocol (score = objectness x class probability,
threshold, per-class NMS, ONNX's ``NonMaxSuppression``) and outputs ``detections`` (K, 7): image
index, x1, y1, x2, y2 (input pixels), score, class, grouped by image and class, best first;
the thresholds are the graph inputs ``score_threshold`` and ``iou_threshold`` (shape (1,)).

What is exported follows a :class:`~yolov3.inference.DetectOptions`: its ``img_size`` (None:
the model's own) and ``precision``, the number format of the network's weights and
activations: ``fp32``; ``fp16`` (for GPU runtimes); ``int8`` for ONNX, the graph quantised by
ONNX Runtime (QDQ, calibrated on the images ``calib``: :mod:`yolov3.inference.quantize`); and
``bf16`` for TorchScript, which PyTorch runs natively on a CPU with AVX512_BF16 or AMX (ONNX
Runtime has no bfloat16 convolution on the CPU, so there is no bf16 ONNX export). The decoding
and the NMS stay float32 in every format. An NMS graph is traced (and int8 calibrated) with the
options' ``conf`` and ``iou``, which stay its inputs.

The dependencies run one way: this module builds on :mod:`yolov3.inference` (the folded
network, the number formats, the quantisation), which knows nothing of it.
"""

from __future__ import annotations

import io
import tempfile
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_convert

from yolov3.choices import EXPORT_PRECISIONS
from yolov3.errors import YoloError
from yolov3.fileio import atomic_write, writable_dir
from yolov3.inference.fast import fold_batch_norm
from yolov3.inference.options import DetectOptions, check_options
from yolov3.inference.precision import DTYPES
from yolov3.inference.quantize import quantize_onnx
from yolov3.model.cfg import as_hw
from yolov3.model.network import Decoded, YOLOv3

Format = Literal["onnx", "torchscript"]
OPSET = 17
MAX_DETECTIONS_PER_CLASS = 300
# The inputs of an NMS graph after the images.
THRESHOLD_INPUTS = ("score_threshold", "iou_threshold")


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX's ``NonMaxSuppression``: in PyTorch, torchvision's per-class NMS giving the same
    (K, 3) ``image, class, box`` indices in the same order; in an ONNX graph, the ONNX op."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: Tensor, iou: Tensor,
                score: Tensor) -> Tensor:
        num_classes = scores.shape[1]
        img, cls, box = (scores > score).nonzero(as_tuple=True)
        group = img * num_classes + cls
        keep = batched_nms(boxes[img, box], scores[img, cls, box], group, float(iou))
        keep = keep[torch.argsort(group[keep], stable=True)]  # by image and class, best first
        first = torch.searchsorted(group[keep], group[keep])  # rank within (image, class)
        keep = keep[torch.arange(len(keep), device=keep.device) - first < max_per_class]
        return torch.stack([img[keep], cls[keep], box[keep]], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, score):
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, score)


class DetectionGraph(nn.Module):
    """A network followed by darknet's detection protocol, as one exportable graph: the
    (K, 7) ``detections`` described in this module's docstring."""

    def __init__(self, net: nn.Module, max_per_class: int = MAX_DETECTIONS_PER_CLASS) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("max_per_class", torch.tensor([max_per_class]), persistent=False)

    def forward(self, images: Tensor, score_threshold: Tensor, iou_threshold: Tensor) -> Tensor:
        out = self.net(images).float()
        boxes = box_convert(out[..., :4], "cxcywh", "xyxy")
        scores = (out[..., 4:5] * out[..., 5:]).transpose(1, 2)  # (B, C, N), as ONNX wants
        img, cls, box = _NonMaxSuppression.apply(
            boxes, scores, self.max_per_class, iou_threshold, score_threshold
        ).unbind(1)
        return torch.cat([img[:, None].float(), boxes[img, box], scores[img, cls, box, None],
                          cls[:, None].float()], dim=1)


def _example(model: YOLOv3, input_hw: tuple[int, int], batch: int,
             dtype: torch.dtype) -> Tensor:
    device = next(model.parameters()).device
    return torch.full((batch, 3, *input_hw), 0.5, dtype=dtype, device=device)


def _precision(fmt: str, precision: str) -> str:
    """``precision``, the number format to export in; one that ``fmt`` has no export for is a
    :class:`YoloError` saying what to use instead."""
    if precision not in EXPORT_PRECISIONS[fmt]:
        reason = {"bf16": "ONNX Runtime has no bfloat16 convolution on the CPU; "
                          "export a bf16 TorchScript module (--format torchscript)",
                  "int8": "int8 is ONNX Runtime's quantised graph; export --format onnx"}
        raise YoloError(f"no {precision} {fmt} export: "
                        + reason.get(precision, f"use one of {', '.join(EXPORT_PRECISIONS[fmt])}"))
    return precision


def _prepared(model: YOLOv3, dtype: torch.dtype) -> Decoded:
    """The batch-norm-folded copy of ``model``, decoded (in float32: ONNX has no float16
    Range), that is exported; its weights and input are of ``dtype``."""
    return Decoded(fold_batch_norm(model).to(dtype)).eval()


def export_onnx(
    model: YOLOv3,
    path: str | Path,
    options: DetectOptions = DetectOptions(),  # noqa: B008 - frozen, so shared safely
    batch: int = 1,
    dynamic: bool = False,
    include_nms: bool = False,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` (batch norm folded) as an ONNX graph for a (batch, 3, H, W) input, H x W
    ``options.img_size`` (None: the model's own), in ``options.precision`` (see the module
    docstring).

    ``dynamic`` leaves batch, height and width free (any multiple of 32); ``include_nms`` adds
    the detection protocol (every class above the threshold: ``options.multi_label`` must be
    True); ``int8`` quantises the network, calibrated on ``options.calib`` letterboxed to the
    input size. Uses ``torch.onnx``'s TorchScript-based exporter, which needs no extra package
    and handles the custom NMS op.
    """
    options = check_options(options, "export_onnx").sized_for(model)
    precision = _precision("onnx", options.precision)
    if include_nms and not options.multi_label:
        raise YoloError("an NMS graph keeps every class above the threshold (multi_label); "
                        "export it without NMS for single-label detection")
    input_hw = as_hw(options.img_size)
    thresholds = (options.conf, options.iou)
    if precision == "int8":
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", options.replace(
                precision="fp32", calib=None), batch, dynamic, include_nms, opset)
            extra = {k: np.array([v], np.float32) for k, v in zip(THRESHOLD_INPUTS, thresholds,
                                                                  strict=True)}
            int8 = quantize_onnx(fp32, Path(tmp) / "int8.onnx", options.calib, input_hw,
                                 extra if include_nms else None)
            with atomic_write(path) as f:
                f.write(int8.read_bytes())
        return Path(path)
    dtype = DTYPES[precision]
    net = _prepared(model, dtype)
    example: tuple[Tensor, ...] = (_example(model, input_hw, batch, dtype),)
    inputs, outputs = ["images"], ["output"]
    image_axes = {"images": {0: "batch", 2: "height", 3: "width"}} if dynamic else {}
    axes = image_axes | ({"output": {0: "batch", 1: "rows"}} if dynamic else {})
    if include_nms:
        net = DetectionGraph(net)
        device = example[0].device
        example += tuple(torch.tensor([v], device=device) for v in thresholds)
        inputs += list(THRESHOLD_INPUTS)
        outputs = ["detections"]
        axes = image_axes | {"detections": {0: "detections"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and trace notes
        torch.onnx.export(
            net, example, buffer, input_names=inputs, output_names=outputs, opset_version=opset,
            dynamic_axes=axes or None, dynamo=False,
        )
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return Path(path)


def export_torchscript(
    model: YOLOv3,
    path: str | Path,
    options: DetectOptions = DetectOptions(),  # noqa: B008 - frozen, so shared safely
    batch: int = 1,
) -> Path:
    """Write ``model`` (batch norm folded) as a traced TorchScript module for ``torch.jit.load``;
    it takes (batch, 3, H, W) images, H x W ``options.img_size`` (None: the model's own), and
    returns (B, N, 5+C) decoded rows (float32). The weights and the input images are of
    ``options.precision``: ``fp32``, ``fp16`` or ``bf16``."""
    options = check_options(options, "export_torchscript").sized_for(model)
    dtype = DTYPES[_precision("torchscript", options.precision)]
    net = _prepared(model, dtype)
    example = _example(model, as_hw(options.img_size), batch, dtype)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    with atomic_write(path) as f:
        f.write(buffer.getvalue())
    return Path(path)


def write_model(model: YOLOv3, path: Path, fmt: str, options: DetectOptions, batch: int = 1,
                dynamic: bool = False, include_nms: bool = False) -> None:
    """Export ``model`` as ``fmt`` (``onnx``: :func:`export_onnx`, ``torchscript``:
    :func:`export_torchscript`) to ``path``, its folder made if need be; a file system error
    is a :class:`YoloError` that names the file."""
    writable_dir(path.parent)
    try:
        if fmt == "onnx":
            export_onnx(model, path, options, batch, dynamic, include_nms)
        else:
            export_torchscript(model, path, options, batch)
    except OSError as exc:
        raise YoloError(f"{path}: cannot write the exported model ({exc.strerror})") from None
