"""Which detections a run keeps: those of the classes asked for, at most ``max_det`` an image."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from yolov3.errors import YoloError
from yolov3.inference.detector import Detections


def class_ids(text: str, names: Sequence[str]) -> Tensor:
    """The 0-based class indices that ``text`` names: class names and/or indices, separated by
    commas (``person,car`` or ``0,2``). An unknown name or an index out of range is a
    :class:`YoloError` listing the known classes."""
    index = {name: k for k, name in enumerate(names)}
    ids = []
    for item in (part.strip() for part in text.split(",")):
        if item in index:
            ids.append(index[item])
        elif item.isdigit() and int(item) < len(names):
            ids.append(int(item))
        else:
            known = ", ".join(f"{k} {name}" for k, name in enumerate(names))
            raise YoloError(f"--classes {text}: '{item}' is not a class of the model (a name or "
                            f"an index 0..{len(names) - 1}; its classes are {known})")
    return torch.tensor(sorted(set(ids)), dtype=torch.long)


def keep_classes(dets: Detections, ids: Tensor, max_det: int) -> Detections:
    """The detections of the classes ``ids``, the best ``max_det`` of them (``dets`` are
    best first)."""
    keep = torch.isin(dets.labels, ids).nonzero().squeeze(1)[:max_det]
    return Detections(dets.boxes[keep], dets.scores[keep], dets.labels[keep])
