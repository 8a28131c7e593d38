"""Detection on images: letterbox, batched forward, postprocess, boxes in image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from yolov3.images import Letterbox, letterbox
from yolov3.inference.postprocess import postprocess
from yolov3.model.network import YOLOv3


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
    """A model with darknet's inference protocol around it.

    ``detect`` takes RGB uint8 images of any size, letterboxes them to ``img_size``, runs the
    network in batches, applies score = objectness x class probability, the threshold, per-class
    NMS, and maps the boxes back to each image.
    """

    def __init__(
        self,
        model: YOLOv3,
        img_size: int | tuple[int, int] = 416,
        conf_thresh: float = 0.25,
        iou_thresh: float = 0.45,
        multi_label: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.input_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.conf_thresh = conf_thresh
        self.iou_thresh = iou_thresh
        self.multi_label = multi_label

    def prepare(self, image: np.ndarray) -> tuple[Tensor, Letterbox]:
        """The letterboxed network input for one image, and the mapping back."""
        return letterbox(image, self.input_hw)

    @torch.inference_mode()
    def detect_prepared(self, batch: Tensor, boxes: Sequence[Letterbox]) -> list[Detections]:
        """Detections for a (B, 3, H, W) batch of letterboxed inputs."""
        output = self.model(batch.to(self.device, non_blocking=True))
        dets = postprocess(output, self.conf_thresh, self.iou_thresh, self.multi_label)
        return [
            Detections(lb.to_image(d[:, :4]).cpu(), d[:, 4].cpu(), d[:, 5].long().cpu())
            for d, lb in zip(dets, boxes, strict=True)
        ]

    def detect(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[Detections]:
        """Detections for each (H, W, 3) uint8 RGB image."""
        results: list[Detections] = []
        for start in range(0, len(images), batch_size):
            prepared = [self.prepare(im) for im in images[start : start + batch_size]]
            batch = torch.stack([p[0] for p in prepared])
            results += self.detect_prepared(batch, [p[1] for p in prepared])
        return results
