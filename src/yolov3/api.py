"""The short way in from Python: one :class:`YOLO` object that reads like the command line.

    from yolov3 import YOLO

    model = YOLO("yolov3-tiny")                  # official weights; or a checkpoint, a .weights
    results = model("street.jpg")                # or [path, array, PIL image, "folder/"]
    results[0].boxes, results[0].scores, results[0].labels, results[0].names
    results[0].plot().save("street-detections.jpg")
    model.val(data="coco128/data.yaml")          # COCO metrics, as `yolov3 val`
    model.train(data="kangaroo", config="finetune")
    model.export("onnx")

Each method runs the code of its verb (:class:`~yolov3.inference.Detector` with
:class:`~yolov3.inference.DetectOptions`, :func:`~yolov3.evaluation.evaluate`,
:class:`~yolov3.train.Trainer`, :mod:`yolov3.export`), with the same checks and defaults.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from yolov3.backends import make_detector
from yolov3.classes import default_names
from yolov3.devices import parse_device
from yolov3.errors import YoloError
from yolov3.fileio import atomic_write, expand_home, writable_dir
from yolov3.images import is_image_file, list_images, load_image, rgb_pixels
from yolov3.inference.detector import Detections
from yolov3.inference.draw import draw_detections
from yolov3.inference.options import DetectOptions
from yolov3.inference.records import detection_records
from yolov3.model.cfg import BUILTIN_CFGS
from yolov3.weights.load import is_untrained, load_model

ImageLike = str | Path | np.ndarray | Image.Image


@dataclass
class Results:
    """The detections of one image: ``boxes`` (N, 4) x1, y1, x2, y2 in the image's pixels,
    ``scores`` (N,) and ``labels`` (N,) 0-based class indices into ``names``, best first;
    ``image`` the (H, W, 3) RGB pixels they were found in, ``path`` its file (None for an
    array)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]
    image: np.ndarray
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def detections(self) -> Detections:
        """These detections as the inference code holds them (tensors)."""
        return Detections(torch.from_numpy(self.boxes), torch.from_numpy(self.scores),
                          torch.from_numpy(self.labels))

    def plot(self) -> Image.Image:
        """The image with its boxes, class names and scores drawn, as ``yolov3 detect``."""
        return draw_detections(self.image, self.detections(), self.names)

    def save(self, folder: str | Path, name: str | None = None) -> Path:
        """Write :meth:`plot` into ``folder`` as ``name`` (default: the image's file name, or
        ``image.jpg``); returns the file's path."""
        out = writable_dir(folder)
        path = out / (name or (self.path.name if self.path else "image.jpg"))
        with atomic_write(path) as f:
            self.plot().save(f, format=Image.registered_extensions().get(path.suffix.lower(),
                                                                          "JPEG"))
        return path

    def to_json(self) -> str:
        """The detections as ``yolov3 detect`` writes them to ``detections.json``: one record
        a detection, with a COCO-style ``bbox`` (x, y, width, height) and 0-based
        ``category_id``."""
        name = self.path.name if self.path else "image"
        return json.dumps(detection_records(name, self.detections(), self.names))


class YOLO:
    """A detector loaded by name or file: ``"yolov3"``, ``"yolov3-spp"``, ``"yolov3-tiny"``
    (their official COCO weights, fetched once), a training checkpoint (``best.pt``: its
    network and class names), or a darknet ``.weights`` file (its packaged network found from
    its size; ``cfg`` names another). ``device``: ``auto`` (the GPU when there is one),
    ``cpu``, ``cuda`` or ``cuda:N``."""

    def __init__(self, model: str | Path = "yolov3-tiny", *, cfg: str | Path | None = None,
                 device: str = "auto") -> None:
        self.source = str(model)
        self.cfg = None if cfg is None else str(cfg)
        self.device = parse_device(device, "device")
        weights = None if self.source in BUILTIN_CFGS and cfg is None else self.source
        network, names = load_model(self.cfg or (self.source if weights is None else None),
                                    weights)
        self.model = network.to(self.device).eval()
        self.names = names or default_names(self.model.num_classes)

    def __call__(self, source: ImageLike | Sequence[ImageLike], *, conf: float = 0.25,
                 iou: float = 0.45, img_size: int | tuple[int, int] | None = None,
                 max_det: int = 300, precision: str = "fp32",
                 batch_size: int = 8) -> list[Results]:
        """Detect on ``source``: an image file, a folder (its images, recursively), a glob
        pattern, an array (any form :func:`~yolov3.images.rgb_pixels` reads) or a PIL
        image, or a list of these. The settings are :class:`DetectOptions`' (checked as
        ``yolov3 detect`` checks its options); one :class:`Results` an image, in order."""
        options = DetectOptions(img_size=img_size, conf=conf, iou=iou, max_det=max_det,
                                precision=precision)
        detector = make_detector(self.model, options, self.device)
        items = list(_expand(source))
        results = []
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            # Each image read once, as detection reads it: (H, W, 3) uint8 RGB.
            images = [load_image(item) if isinstance(item, Path) else rgb_pixels(item, "image")
                      for item in chunk]
            found = detector.detect(images)
            for item, image, dets in zip(chunk, images, found, strict=True):
                results.append(Results(dets.boxes.numpy(), dets.scores.numpy(),
                                       dets.labels.numpy(), self.names, image,
                                       item if isinstance(item, Path) else None))
        return results

    def val(self, data: str | Path, *, split: str = "val", img_size: int | None = None,
            batch_size: int = 8, out: str | Path | None = None,
            **options: Any) -> dict[str, Any]:
        """COCO metrics on ``data``'s ``split`` with darknet's protocol, as ``yolov3 val``:
        ``AP``, ``AP50``, ... ``per_class``, ``table`` (the printable summary); with ``out``,
        the report files there. ``options``: other :class:`DetectOptions` fields."""
        from yolov3.datasets.open import open_dataset
        from yolov3.evaluation import evaluate

        dataset = open_dataset(data, split)
        return evaluate(self.model, dataset,
                        DetectOptions.for_evaluation(img_size=img_size, **options),
                        device=self.device, batch_size=batch_size,
                        out_dir=None if out is None else writable_dir(out),
                        model_names=self.names, progress=False)

    def train(self, data: str | Path, *, config: str | Path = "finetune",
              out: str | Path | None = None, overrides: Iterable[str] = (),
              **settings: Any) -> dict[str, Any]:
        """Train from this model's weights on ``data`` with the packaged ``config`` (or a YAML
        file), as ``yolov3 train --config CONFIG --data DATA --weights THIS``; ``settings``
        are config keys as ``section__key=value`` or plain ``key=value`` for the command's
        shorthands (``epochs``, ``max_iter``, ``img_size``, ``batch``); ``overrides`` more
        ``section.key=value`` texts. Returns the run's results (``out``: its folder; default
        ``runs/train``, ``runs/train2``, ...)."""
        from yolov3.train import Trainer, load_config

        shorthands = {"epochs": "schedule.epochs", "max_iter": "schedule.max_iter",
                      "img_size": "data.img_size", "batch": "optimizer.batch",
                      "device": "train.device", "workers": "train.workers"}
        cfg = self.cfg or (self.source if self.source in BUILTIN_CFGS else None)
        weights = "null" if is_untrained(self.source) else json.dumps(self.source)
        texts = [f"data.dataset={json.dumps(str(data))}", f"model.weights={weights}"]
        if cfg is not None:
            texts.append(f"model.cfg={json.dumps(cfg)}")
        for key, value in settings.items():
            name = shorthands.get(key, key.replace("__", "."))
            texts.append(f"{name}={json.dumps(value)}")
        run = load_config(config, [*texts, *overrides])
        trainer = Trainer(run, out or "runs/train", next_free=out is None)
        return trainer.train()

    def export(self, format: str = "onnx", *, out: str | Path | None = None,
               img_size: int | tuple[int, int] | None = None, precision: str = "fp32",
               batch: int = 1) -> Path:
        """Write the model as ``format`` (``onnx`` or ``torchscript``), as ``yolov3 export``:
        to ``out`` (never over the weights it was loaded from), by default
        ``runs/export/NAME.onnx`` in the first of ``runs/export``, ``runs/export2``, ...
        without that file. Returns the file's path."""
        from yolov3.choices import EXPORT_SUFFIXES
        from yolov3.export import write_model
        from yolov3.run_folders import export_path

        if format not in EXPORT_SUFFIXES:
            raise YoloError(f"export format must be one of {', '.join(EXPORT_SUFFIXES)}, got "
                            f"{format!r}")
        path = export_path(out, Path(self.source).stem + EXPORT_SUFFIXES[format],
                           {"model": self.source, "cfg": self.cfg})
        write_model(self.model, path, format,
                    DetectOptions(img_size=img_size, precision=precision), batch)
        return path


def _expand(source: ImageLike | Sequence[ImageLike]) -> Iterable[Path | np.ndarray | Image.Image]:
    """Every image ``source`` names: files, the images under folders and glob patterns,
    arrays and PIL images as they are."""
    if isinstance(source, str | Path | np.ndarray | Image.Image):
        source = [source]
    for item in source:
        if isinstance(item, np.ndarray | Image.Image):
            yield item
            continue
        path = expand_home(str(item))
        if path.is_dir():
            yield from list_images(path)
        elif path.is_file():
            yield path
        elif any(c in str(item) for c in "*?["):
            found = sorted(p for p in Path().glob(str(item)) if is_image_file(p))
            if not found:
                raise YoloError(f"{item}: no images match")
            yield from found
        else:
            raise YoloError(f"{item}: no such file or folder")
