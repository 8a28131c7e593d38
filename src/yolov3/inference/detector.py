"""Detection on images: letterbox, batched forward, postprocess, boxes in image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from yolov3.errors import DataError, YoloError
from yolov3.images import Letterbox, rgb_pixels
from yolov3.inference.batching import letterboxed_batches
from yolov3.inference.options import DetectOptions, check_options
from yolov3.inference.postprocess import postprocess
from yolov3.model.cfg import as_hw
from yolov3.model.network import Decoded, YOLOv3

#: What :meth:`Detector.detect` takes: one image (an array or a PIL image), a sequence of them,
#: or an (N, H, W, C) array of N images.
Images = np.ndarray | Image.Image | Sequence[np.ndarray | Image.Image]


@dataclass
class Detections:
    """Detections of one image, in image pixels: ``boxes`` (n, 4) x1, y1, x2, y2, ``scores`` (n,),
    ``labels`` (n,) 0-based class indices, best first."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return len(self.scores)


class RGBImages(Sequence[np.ndarray]):
    """``images`` read on access as (H, W, 3) uint8 RGB by :func:`~yolov3.images.rgb_pixels`
    (a :class:`DataError` naming ``image i`` for one it cannot read as meant)."""

    def __init__(self, images: Sequence[np.ndarray | Image.Image]) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> np.ndarray:
        return rgb_pixels(self.images[i], f"image {i}")


class Detector:
    """A network with darknet's inference protocol around it.

    ``model`` is a :class:`YOLOv3` (decoded here by :class:`Decoded`) or any module that gives
    darknet's decoded output (B, N, 5+C) for a batch of inputs (the fast copy, an ONNX graph).
    ``options`` (:class:`DetectOptions`) give the input size (None: a :class:`YOLOv3`'s own),
    the thresholds and ``max_det``. ``detect`` takes images of any size, letterboxes them to
    the input size, runs the network in batches, applies score = objectness x class
    probability, the threshold, per-class NMS, and maps the boxes back to each image.

    The network runs as it is given: a :class:`YOLOv3` in fp32 on PyTorch, so options asking
    for another precision or backend are refused for one;
    :func:`~yolov3.backends.make_detector` builds the engine they ask for. ``precision`` says
    what the network runs in.
    """

    def __init__(
        self,
        model: nn.Module,
        options: DetectOptions = DetectOptions(),  # noqa: B008 - frozen, so shared safely
        device: str | torch.device = "cpu",
    ) -> None:
        options = check_options(options, "Detector")
        if isinstance(model, YOLOv3):
            if options.precision != "fp32" or options.backend != "torch":
                raise YoloError(f"Detector runs the model as it is, in fp32 on torch; for "
                                f"precision {options.precision} on {options.backend} build the "
                                "engine with yolov3.backends.make_detector(model, options)")
            options = options.sized_for(model)
        elif options.img_size is None:
            raise YoloError(f"img_size: this network ({type(model).__name__}) does not say its "
                            "input size; give DetectOptions(img_size=...)")
        self.options = options
        self.device = torch.device(device)
        network = Decoded(model) if isinstance(model, YOLOv3) else model
        self.model = network.to(self.device).eval()
        self.input_hw = as_hw(options.img_size)
        self.precision = "fp32"  # the number format the network runs in (see make_detector)

    @torch.inference_mode()
    def detect_batch(self, inputs: Tensor, letterboxes: Sequence[Letterbox]) -> list[Detections]:
        """Detections for a (B, 3, H, W) batch of letterboxed inputs, in image pixels."""
        output = self.model(inputs.to(self.device, non_blocking=True))
        o = self.options
        dets = postprocess(output, o.conf, o.iou, o.multi_label, o.max_det)
        return [
            Detections(lb.to_image(d[:, :4]).cpu(), d[:, 4].cpu(), d[:, 5].long().cpu())
            for d, lb in zip(dets, letterboxes, strict=True)
        ]

    def detect(self, images: Images, batch_size: int = 8) -> list[Detections]:
        """Detections for each image, in order: one :class:`Detections` per image, for a
        single image too.

        ``images`` is a sequence of images, one image, or an (N, H, W, C) array of N images;
        an image is an array or a PIL image of any usual form, read as
        :func:`~yolov3.images.rgb_pixels` says (uint8 or [0, 1] float, grey, RGB or RGBA). An
        image that cannot be read as meant is a :class:`DataError` naming its position."""
        if isinstance(images, Image.Image) or (isinstance(images, np.ndarray)
                                               and images.ndim != 4):
            images = [images]
        results: list[Detections] = []
        for batch in letterboxed_batches(RGBImages(images), self.input_hw, batch_size):
            if batch.failures:
                raise DataError(batch.failures[0][1])
            results += self.detect_batch(batch.inputs, batch.letterboxes)
        return results
