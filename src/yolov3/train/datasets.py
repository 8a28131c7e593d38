"""The training and validation splits a config names, or the built-in demo dataset, and what
must be true of them before a run starts."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from yolov3.datasets.base import DetectionDataset, evenly_spaced
from yolov3.datasets.check import box_counts, over_cap_message
from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.datasets.voc import find_voc_folders
from yolov3.datasets.yolo_txt import label_path
from yolov3.errors import DataError, raise_problems
from yolov3.inputs.config import size_problems
from yolov3.inputs.loader import input_shape

if TYPE_CHECKING:
    from yolov3.train.config import TrainConfig

log = logging.getLogger("yolov3")

#: ``data.aspect`` value that measures the training images (see :class:`DataConfig`).
AUTO_ASPECT = "auto"
# The most elongated network input data.aspect sets (width / height, or its inverse).
_MAX_ASPECT = 4.0


@dataclass
class DataConfig:
    """The dataset and what the data pipeline keeps of it. ``aspect``: the network input's
    width / height, for training and evaluation (1: darknet's square; else ``img_size`` and
    each multi-scale size are the longer side, see :func:`~yolov3.inputs.loader.input_shape`);
    ``auto`` measures the training images (the median of their width / height) and records it
    in the config when the run starts."""

    dataset: str | None
    img_size: int
    aspect: float | str
    max_labels: int

    def __post_init__(self) -> None:
        problems = size_problems({"data.img_size": self.img_size})
        if self.max_labels < 1:
            problems.append(f"data.max_labels must be >= 1, got {self.max_labels}")
        aspect = self.aspect
        if aspect != AUTO_ASPECT and (isinstance(aspect, str) or not (
                math.isfinite(aspect) and 1 / _MAX_ASPECT <= aspect <= _MAX_ASPECT)):
            problems.append(f"data.aspect is the network input's width / height, a number from "
                            f"{1 / _MAX_ASPECT:g} to {_MAX_ASPECT:g} (1: square) or "
                            f"'{AUTO_ASPECT}', got {aspect!r}")
        raise_problems(problems)

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the evaluation input (``aspect`` measured already)."""
        if self.aspect == AUTO_ASPECT:
            raise ValueError("data.aspect 'auto' is measured when training starts")
        return input_shape(self.img_size, float(self.aspect))


def open_training_data(config: TrainConfig) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, val) splits of ``config.data.dataset``; the generated demo dataset (coloured
    shapes, :class:`SyntheticShapes`) when it is null."""
    if config.data.dataset is None:
        seed = config.train.seed
        return SyntheticShapes("train", seed=seed), SyntheticShapes("val", seed=seed)
    train = open_dataset(config.data.dataset, "train")
    val = open_dataset(config.data.dataset, "val")
    shared = len(set(train.files) & set(val.files))
    if shared:
        log.warning("%s: %d of the %d validation images are training images too (a COCO JSON "
                    "is one set, used for both): the validation AP is not a held-out measure; "
                    "give a dataset YAML with separate train and val splits",
                    config.data.dataset, shared, len(val))
    return train, val


def check_training_data(train: DetectionDataset, val: DetectionDataset,
                        max_labels: int, warn: bool = True) -> int:
    """What must hold before a run starts; returns the boxes of the validation split.

    A training split without a box to learn from is a :class:`DataError` that says where the
    labels were looked for (labels in the wrong folder would give hours of training on
    background). With ``warn``: a validation split without images or boxes is a warning that
    no AP will be computed and no ``best.pt`` written; images with more than ``max_labels``
    boxes are counted (each epoch keeps a random ``max_labels`` of them)."""
    counts = box_counts(train)
    if not counts.sum():
        raise DataError(f"{train.source}: the {train.split} split has {_no_boxes(train)}: "
                        "nothing to train on (the run would learn background only). Put the "
                        "labels where they are looked for; `yolov3 data check "
                        f"{train.source}` lists what it finds")
    val_boxes = int(box_counts(val).sum())
    if warn and not val_boxes:
        what = "no images" if not len(val) else _no_boxes(val)
        log.warning("%s: the %s split has %s: no validation AP will be computed and no best.pt "
                    "written (last.pt and last.weights are)", val.source, val.split, what)
    over = int(np.count_nonzero(counts > max_labels))
    if warn and over:
        log.warning("%s", over_cap_message(over, max_labels))
    return val_boxes


def median_aspect(dataset: DetectionDataset, limit: int = 1000) -> float:
    """The median width / height of ``dataset``'s images (of ``limit`` evenly spaced ones in a
    larger set), rounded to 0.01: from the sizes the dataset knows, the file header of the
    others; images whose header cannot be read are left out (training replaces them), and 1
    (square) when none can be read."""
    ratios = []
    for i in evenly_spaced(len(dataset), limit):
        try:
            height, width = dataset.image_hw(int(i))
        except DataError:
            continue
        ratios.append(width / height)
    return round(float(np.median(ratios)), 2) if ratios else 1.0


def _no_boxes(dataset: DetectionDataset) -> str:
    """``N images but no boxes``, with where the labels were looked for."""
    n = len(dataset)
    if not n:
        return "no images"
    head = f"{n} images but no boxes"
    if dataset.num_boxes:  # boxes there, all of them marked ignore
        return (f"{head} that training uses: all its {dataset.num_boxes} boxes are marked "
                "ignore (COCO iscrowd, VOC difficult)")
    if dataset.format == "yolo":
        folders = sorted({str(label_path(f).parent) for f in dataset.files})
        found = sum(label_path(f).is_file() for f in dataset.files)
        where = ", ".join(folders[:3]) + (f" and {len(folders) - 3} more" if len(folders) > 3
                                          else "")
        return (f"{head}: YOLO label files (the image's path with its last images/ or "
                f"JPEGImages/ folder made labels/, and .txt) were looked for in {where}; "
                + (f"{found} of them exist and hold no box" if found else "none exists"))
    if dataset.format == "voc":
        folders = find_voc_folders(dataset.source)
        where = folders[0] if folders else dataset.source
        return f"{head}: the annotation files in {where} list no objects for them"
    return f"{head}: {dataset.source} has no annotations for them"


def prepare_training_data(config: TrainConfig, warn: bool = True,
                          ) -> tuple[DetectionDataset, DetectionDataset, int]:
    """The (train, val) splits of ``config`` and the validation split's box count, checked by
    :func:`check_training_data`, with the splits' problems told (``warn``); ``data.aspect:
    auto`` is measured here and recorded in the config, so that a resumed run keeps it."""
    train, val = open_training_data(config)
    for split in (train, val):
        if split.problems and warn:
            log.warning("%s split: %s", split.split, split.problems.summary())
    val_boxes = check_training_data(train, val, config.data.max_labels, warn=warn)
    data = config.data
    if data.aspect == AUTO_ASPECT:
        data.aspect = median_aspect(train)
        if warn:
            log.info("data.aspect auto: %s (the training images' median width / height): "
                     "inputs of %dx%d at data.img_size", data.aspect, *data.input_hw[::-1])
    return train, val, val_boxes
