"""Detection on images: letterbox, batched forward, postprocess, boxes in image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from yolov3.images import Letterbox
from yolov3.inference.batching import letterboxed_batches
from yolov3.inference.postprocess import postprocess
from yolov3.model.cfg import as_hw
from yolov3.model.network import Decoded, YOLOv3


@dataclass
class Detections:
    """Detections of one image, in image pixels: ``boxes`` (n, 4) x1, y1, x2, y2, ``scores`` (n,),
    ``labels`` (n,) 0-based class indices, best first."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """A network with darknet's inference protocol around it.

    ``model`` is a :class:`YOLOv3` (decoded here by :class:`Decoded`) or any module that gives
    darknet's decoded output (B, N, 5+C) for a batch of inputs (the fast copy, an ONNX graph).
    ``detect`` takes RGB uint8 images of any size, letterboxes them to ``img_size``, runs the
    network in batches, applies score = objectness x class probability, the threshold, per-class
    NMS, and maps the boxes back to each image.
    """

    def __init__(
        self,
        model: nn.Module,
        img_size: int | tuple[int, int] = 416,
        conf_thresh: float = 0.25,
        iou_thresh: float = 0.45,
        multi_label: bool = True,
        device: str | torch.device = "cpu",
        max_det: int = 300,
    ) -> None:
        self.device = torch.device(device)
        network = Decoded(model) if isinstance(model, YOLOv3) else model
        self.model = network.to(self.device).eval()
        self.input_hw = as_hw(img_size)
        self.conf_thresh = conf_thresh
        self.iou_thresh = iou_thresh
        self.multi_label = multi_label
        self.max_det = max_det
        self.precision = "fp32"  # the number format the network runs in (see make_detector)

    @torch.inference_mode()
    def detect_batch(self, inputs: Tensor, letterboxes: Sequence[Letterbox]) -> list[Detections]:
        """Detections for a (B, 3, H, W) batch of letterboxed inputs, in image pixels."""
        output = self.model(inputs.to(self.device, non_blocking=True))
        dets = postprocess(output, self.conf_thresh, self.iou_thresh, self.multi_label,
                           self.max_det)
        return [
            Detections(lb.to_image(d[:, :4]).cpu(), d[:, 4].cpu(), d[:, 5].long().cpu())
            for d, lb in zip(dets, letterboxes, strict=True)
        ]

    def detect(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Detections]:
        """Detections for each (H, W, 3) uint8 RGB image."""
        results: list[Detections] = []
        for batch in letterboxed_batches(images, self.input_hw, batch_size):
            results += self.detect_batch(batch.inputs, batch.letterboxes)
        return results
