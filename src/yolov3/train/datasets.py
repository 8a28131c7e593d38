"""The training and validation splits a config names, or the built-in demo dataset."""

from __future__ import annotations

from yolov3.data.base import DetectionDataset
from yolov3.data.datasets import open_dataset
from yolov3.data.synthetic import SyntheticShapes
from yolov3.train.config import TrainConfig


def open_training_data(config: TrainConfig) -> tuple[DetectionDataset, DetectionDataset]:
    """(train, val) splits of ``config.data.dataset``; the generated demo dataset (coloured
    shapes, :class:`SyntheticShapes`) when it is null."""
    if config.data.dataset is None:
        seed = config.train.seed
        return SyntheticShapes("train", seed=seed), SyntheticShapes("val", seed=seed)
    return open_dataset(config.data.dataset, "train"), open_dataset(config.data.dataset, "val")
