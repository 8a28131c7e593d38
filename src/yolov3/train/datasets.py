"""The training and validation splits a config names, or the built-in demo dataset."""

from __future__ import annotations

from yolov3.data.datasets import open_dataset
from yolov3.train.config import TrainConfig


def open_training_data(config: TrainConfig):
    """(train, val) datasets of ``config.data.dataset``; the generated demo dataset when it
    is null."""
    if config.data.dataset is None:
        from yolov3.data.synthetic import demo_splits

        return demo_splits(seed=config.train.seed)
    return (open_dataset(config.data.dataset, "train"), open_dataset(config.data.dataset, "val"))
