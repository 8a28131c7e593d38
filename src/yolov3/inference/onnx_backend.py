"""ONNX Runtime as the engine behind :class:`Detector`: the same detections from an exported
graph (see :mod:`yolov3.export`), with or without the NMS in the graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from yolov3.errors import YoloError
from yolov3.images import Letterbox
from yolov3.inference.detector import Detections, Detector
from yolov3.inference.options import DetectOptions


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise YoloError("ONNX Runtime is not installed: pip install 'yolov3[export]'") from None
    return onnxruntime


class OnnxRuntimeModel(nn.Module):
    """An exported graph run by ONNX Runtime on the CPU, called like the model it came from:
    (B, 3, H, W) float tensor in, the graph's first output out as a tensor.

    ``num_threads`` is ONNX Runtime's intra-op thread count (default: PyTorch's, so both
    engines use the same); all graph optimisations are on.
    """

    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        super().__init__()
        self.path = path
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors for unreadable graphs
            raise YoloError(f"{path}: ONNX Runtime cannot load this graph ({exc})") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = np.float16 if first.type == "tensor(float16)" else np.float32
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.has_nms = self.session.get_outputs()[0].name == "detections"

    def input_hw(self) -> tuple[int, int]:
        """The graph's input (height, width); a :class:`YoloError` for a graph exported with
        free height and width (``dynamic``), which says no size."""
        height, width = self.session.get_inputs()[0].shape[2:]
        if not (isinstance(height, int) and isinstance(width, int)):
            raise YoloError(f"{self.path}: the graph takes any input size; give "
                            "DetectOptions(img_size=...)")
        return height, width

    def forward(self, images: Tensor, *extra: Tensor) -> Tensor:
        feed = {self.input_name: images.cpu().numpy().astype(self.input_dtype, copy=False)}
        feed |= {n: t.cpu().numpy() for n, t in zip(self.input_names[1:], extra, strict=True)}
        return torch.from_numpy(self.session.run(None, feed)[0])


class OnnxDetector(Detector):
    """:class:`Detector` on an ONNX graph run by ONNX Runtime.

    A graph exported without NMS feeds the same postprocessing as the PyTorch model; one
    exported ``include_nms`` runs darknet's protocol in the graph (every class above the
    threshold, as ``multi_label``; ``options.conf`` and ``options.iou`` are its inputs) and is
    only regrouped per image here. ``options.img_size`` None is the graph's own input size (a
    graph exported ``dynamic`` has none: give it). ``num_threads`` is ONNX Runtime's.
    """

    def __init__(
        self,
        path: str | Path,
        options: DetectOptions = DetectOptions(),  # noqa: B008 - frozen, so shared safely
        num_threads: int | None = None,
    ) -> None:
        model = OnnxRuntimeModel(path, num_threads)
        if model.has_nms and not options.multi_label:
            raise YoloError(f"{path}: its NMS keeps every class above the threshold; "
                            "single-label detection needs a graph exported without NMS")
        if options.img_size is None:
            options = options.replace(img_size=model.input_hw())
        super().__init__(model, options)

    @torch.inference_mode()
    def detect_batch(self, inputs: Tensor, letterboxes: Sequence[Letterbox]) -> list[Detections]:
        """Detections for a (B, 3, H, W) batch of letterboxed inputs, in image pixels."""
        if not self.model.has_nms:
            return super().detect_batch(inputs, letterboxes)
        found = self.model(inputs, torch.tensor([self.options.conf]),
                           torch.tensor([self.options.iou]))
        found = found[torch.argsort(found[:, 5], descending=True, stable=True)]
        results = []
        for i, lb in enumerate(letterboxes):
            d = found[found[:, 0] == i][: self.options.max_det]
            results.append(Detections(lb.to_image(d[:, 1:5]), d[:, 5], d[:, 6].long()))
        return results
