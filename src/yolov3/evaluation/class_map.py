"""Which dataset class each of a model's classes is."""

from __future__ import annotations

import re

import numpy as np

from yolov3.errors import DataError

# darknet's (and Pascal VOC's) names for COCO's classes.
_ALIASES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch",
            "tvmonitor": "tv"}


def _key(name: str) -> str:
    """A name compared without case, spaces, ``_`` or ``-``, darknet's spellings made COCO's."""
    key = re.sub(r"[\s_\-]+", "", name.lower())
    return _ALIASES.get(key, key)


def class_mapping(model_names: list[str], dataset_names: list[str]) -> np.ndarray:
    """For each model class, the index of the same class in the dataset, or -1.

    Classes are matched by name, ignoring case, spaces and ``_``, and knowing darknet's names
    for COCO's (``motorbike`` is ``motorcycle``), so that the 80-class COCO model can be scored
    on a dataset of some COCO classes, or on Pascal VOC, and names in another order still meet.
    With as many classes on both sides and names that do not all match (a model trained on
    the dataset, its names unknown), the classes are taken in order.
    """
    index = {_key(n): k for k, n in enumerate(dataset_names)}
    mapping = np.array([index.get(_key(n), -1) for n in model_names], np.int64)
    if len(model_names) == len(dataset_names) and not (
        (mapping >= 0).all() and len(set(mapping.tolist())) == len(mapping)
    ):
        return np.arange(len(model_names))
    if (mapping < 0).all():
        raise DataError(
            f"the model's {len(model_names)} classes and the dataset's {len(dataset_names)} "
            f"share no name (dataset: {', '.join(dataset_names[:10])}"
            f"{', ...' if len(dataset_names) > 10 else ''}); give the model's class names "
            "or a model trained on this dataset"
        )
    return mapping
