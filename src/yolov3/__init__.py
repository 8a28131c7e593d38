"""YOLOv3 in PyTorch: darknet-exact model, weights, training and evaluation."""

from __future__ import annotations

from pathlib import Path

from yolov3.errors import YoloError
from yolov3.model import BUILTIN_CFGS, YOLOv3, build_model
from yolov3.weights.darknet import LoadReport, load_darknet_weights, save_darknet_weights

__version__ = "0.1.0"


def from_darknet(
    cfg: str | Path,
    weights: str | Path | None = None,
    num_classes: int | None = None,
    anchors: list[tuple[float, float]] | None = None,
) -> YOLOv3:
    """A model in eval mode from a darknet cfg (a built-in name such as ``yolov3-tiny``, or a
    path) and optionally darknet weights (an official name such as ``yolov3-tiny``, fetched and
    cached on first use, or a path)."""
    from yolov3.weights.official import resolve_weights

    model = build_model(cfg, num_classes=num_classes, anchors=anchors)
    if weights is not None:
        load_darknet_weights(model, resolve_weights(weights))
    return model.eval()


__all__ = [
    "BUILTIN_CFGS",
    "LoadReport",
    "YOLOv3",
    "YoloError",
    "build_model",
    "from_darknet",
    "load_darknet_weights",
    "save_darknet_weights",
]
