"""The demo dataset: deterministic, exact boxes, the dataset interface."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from yolov3.datasets.base import DetectionDataset
from yolov3.datasets.synthetic import (
    MAX_OCCLUSION,
    SHAPES,
    SyntheticShapes,
    paint_shapes,
)
from yolov3.errors import DataError


@pytest.fixture(scope="module")
def val() -> SyntheticShapes:
    return SyntheticShapes("val", num_images=40)


def test_images_are_a_pure_function_of_seed_split_and_index(val):
    again = SyntheticShapes("val", num_images=40)
    for i in (0, 7, 39):
        a, b = val[i], again[i]
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    # Reading out of order changes nothing.
    assert np.array_equal(val[7].image, again[7].image)
    train, other_seed = SyntheticShapes("train", 40), SyntheticShapes("val", 40, seed=1)
    assert not np.array_equal(train[0].image, val[0].image)
    assert not np.array_equal(other_seed[0].image, val[0].image)
    # The split's size does not change its images.
    assert np.array_equal(SyntheticShapes("val", num_images=3)[2].image, val[2].image)


def test_dataset_interface(val):
    assert isinstance(val, DetectionDataset)
    assert len(val) == 40 and val.names == list(SHAPES) and len(SHAPES) >= 5
    sample = val[3]
    assert sample.image.shape == (256, 256, 3) and sample.image.dtype == np.uint8
    assert sample.boxes.dtype == np.float32 and sample.labels.dtype == np.int64
    ann = val.annotations(3)
    assert ann.size == (256, 256) and np.array_equal(ann.boxes, sample.boxes)
    assert np.array_equal(ann.labels, sample.labels) and not ann.ignore.any()
    wide = SyntheticShapes("test", num_images=2, image_size=(160, 224))
    assert wide[1].image.shape == (160, 224, 3)
    assert (wide[1].boxes[:, [2, 3]] <= [224, 160]).all()
    with pytest.raises(DataError):
        SyntheticShapes("holdout")


def test_objects_count_size_classes_and_occlusion():
    data = SyntheticShapes("train", num_images=300)
    counts = np.array([len(data.annotations(i).boxes) for i in range(len(data))])
    assert counts.min() >= 1 and counts.max() <= 5 and len(set(counts.tolist())) == 5
    boxes = np.concatenate([data.annotations(i).boxes for i in range(len(data))])
    sides = boxes[:, 2:] - boxes[:, :2]
    assert sides.max(1).min() >= 0.15 * 256 - 1e-3 and sides.max() <= 0.5 * 256 + 1e-3
    assert (boxes >= 0).all() and (boxes <= 256).all()
    labels = np.concatenate([data.annotations(i).labels for i in range(len(data))])
    assert np.bincount(labels, minlength=len(SHAPES)).min() > 0.1 * len(labels)
    # A later shape covers at most MAX_OCCLUSION of an earlier one's box, and some do overlap.
    overlapping = 0
    for i in range(len(data)):
        b = data.annotations(i).boxes
        for j in range(len(b)):
            for k in range(j + 1, len(b)):
                lo, hi = np.maximum(b[j, :2], b[k, :2]), np.minimum(b[j, 2:], b[k, 2:])
                inter = np.clip(hi - lo, 0, None).prod()
                assert inter <= MAX_OCCLUSION * np.prod(b[j, 2:] - b[j, :2]) + 1e-3
                overlapping += inter > 0
    assert overlapping > 20


def test_boxes_are_tight_around_the_drawn_shapes(val):
    """Each shape painted alone in white on black: the pixels it touches span its box, and at
    most the rest of the boundary pixels beyond it (pixel edges are whole numbers)."""
    outward = np.array([-1, -1, 1, 1])
    for i in range(len(val)):
        for shape in val.shapes(i):
            white = dataclasses.replace(shape, colour=np.ones(3, np.float32), shade=0.0)
            canvas = np.zeros((256, 256, 3), np.float32)
            paint_shapes(canvas, [white])
            ys, xs = np.nonzero(canvas[..., 0] > 0)
            drawn = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            growth = (drawn - shape.box) * outward
            assert growth.min() > -0.02 and growth.max() < 1.0, (i, SHAPES[shape.label])
            # Anti-aliased coverage adds up to the polygon's area (to a sub-pixel rim).
            x, y = shape.polygon.T
            area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
            assert canvas[..., 0].sum() == pytest.approx(area, rel=0.05)


def test_shapes_are_visible_in_the_image(val):
    """The top shape's box holds its colour: the image is the one the boxes describe."""
    for i in range(10):
        top = val.shapes(i)[-1]
        x1, y1, x2, y2 = np.round(top.box).astype(int)
        patch = val[i].image[y1:y2, x1:x2].astype(np.float32) / 255
        near = np.abs(patch - top.colour).max(2) < 0.2
        assert near.mean() > 0.25
