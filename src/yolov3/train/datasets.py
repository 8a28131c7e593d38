"""The training and validation splits a config names, or the built-in demo dataset."""

from __future__ import annotations

import logging

from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.open import open_dataset
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.train.config import TrainConfig

log = logging.getLogger("yolov3")


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
