"""The training pictures: the batch grid with its target boxes drawn where they are, and the
label statistics read from the labels alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED
from data_factory import IMAGES, NAMES, write_coco, write_yolo
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.open import open_dataset
from yolov3.inference.draw import class_colour
from yolov3.inputs.loader import MultiScale, make_train_loader
from yolov3.inputs.mix import Mix
from yolov3.train.pictures import (
    MAX_PICTURE_SIDE,
    batch_grid,
    save_batch_picture,
    save_label_picture,
)

DARK = torch.tensor([0.1, 0.1, 0.1])


def dark_batch(n: int, h: int, w: int) -> torch.Tensor:
    """``n`` (3, h, w) images of a dark grey, image i a little lighter in red than image i - 1."""
    images = DARK[None, :, None, None].repeat(n, 1, h, w)
    images[:, 0] += torch.arange(n)[:, None, None] * 0.02
    return images


def test_the_grid_holds_the_batch_row_by_row():
    images = dark_batch(5, 64, 96)
    grid = batch_grid(images)
    assert grid.shape == (128, 288, 3) and grid.dtype == np.uint8  # 3 columns, 2 rows
    for i in range(5):
        row, col = divmod(i, 3)
        tile = grid[row * 64 + 1 : (row + 1) * 64, col * 96 + 1 : (col + 1) * 96]
        assert (tile == np.round(images[i, :, 0, 0].numpy() * 255)).all()
    assert (grid[64:, 192:] == 255).all()  # the sixth tile is empty
    assert (grid[64] == 255).all() and (grid[:, 96] == 255).all()  # lines between tiles
    assert batch_grid(images, max_images=1).shape == (64, 96, 3)


def test_the_batch_picture_draws_each_target_on_its_tile(tmp_path):
    images = dark_batch(5, 64, 96)
    # tile 4 (row 1, column 1): a dog from x 30 to 78, y 20 to 52 of its 96 x 64 input
    targets = [torch.zeros(0, 5) for _ in range(5)]
    targets[4] = torch.tensor([[1, 54 / 96, 36 / 64, 48 / 96, 32 / 64]])
    targets[0] = torch.tensor([[2, 0.5, 0.5, 0.5, 0.5], [0, 0.25, 0.75, 0.25, 0.25]])
    path = tmp_path / "train_batch0.png"
    save_batch_picture(images, targets, NAMES, path)
    picture = np.asarray(Image.open(path).convert("RGB"))
    assert picture.shape == (128, 288, 3)
    dog = class_colour(1)
    x1, y1, x2, y2 = 96 + 30, 64 + 20, 96 + 78, 64 + 52
    assert tuple(picture[(y1 + y2) // 2, x1]) == dog  # left edge
    assert tuple(picture[(y1 + y2) // 2, x2 - 1]) == dog  # right edge, inside the box
    assert tuple(picture[y2 - 1, (x1 + x2) // 2]) == dog  # bottom edge
    assert tuple(picture[(y1 + y2) // 2, x1 + 4]) == tuple(np.round(images[4, :, 0, 0].numpy()
                                                                    * 255).astype(int))
    assert tuple(picture[(y1 + y2) // 2, x2]) != dog  # just outside
    zebra = class_colour(2)
    assert tuple(picture[32, 24]) == zebra and tuple(picture[48, 12]) == class_colour(0)
    # A JPEG of the same picture: the same size, the edges in about the class colour.
    save_batch_picture(images, targets, NAMES, tmp_path / "train_batch0.jpg")
    with Image.open(tmp_path / "train_batch0.jpg") as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (288, 128)
        edge = np.asarray(jpeg.convert("RGB"))[(y1 + y2) // 2, x1].astype(int)
    assert np.abs(edge - dog).max() < 40


def test_a_large_batch_picture_is_scaled_down(tmp_path):
    images = dark_batch(4, 1100, 1100)
    targets = [torch.tensor([[0, 0.5, 0.5, 0.5, 0.5]])] * 4
    save_batch_picture(images, targets, NAMES, tmp_path / "big.png")
    with Image.open(tmp_path / "big.png") as picture:
        assert picture.size == (MAX_PICTURE_SIDE, MAX_PICTURE_SIDE)
        pixels = np.asarray(picture.convert("RGB"))
    factor = MAX_PICTURE_SIDE / 2200
    x1, y_mid = round(275 * factor), round(550 * factor)
    assert tuple(pixels[y_mid, x1]) == class_colour(0)
    with pytest.raises(ValueError, match="empty batch"):
        save_batch_picture(images[:0], [], NAMES, tmp_path / "none.png")


def test_a_loader_batch_with_mosaics_makes_a_picture(tmp_path):
    data = open_dataset(write_yolo(tmp_path / "yolo"), "val")
    loader = make_train_loader(data, 4, multiscale=MultiScale(128, 128), max_iterations=1,
                               mix=Mix(mosaic=1.0))
    images, targets, _ = next(iter(loader))
    save_batch_picture(images, targets, data.names, tmp_path / "train_batch0.jpg")
    with Image.open(tmp_path / "train_batch0.jpg") as picture:
        assert picture.size == (256, 256)


def expected_labels(dataset) -> tuple[np.ndarray, np.ndarray]:
    """What training_boxes must give, image by image through the public annotations."""
    labels, wh = [], []
    for i in range(len(dataset)):
        ann = dataset.annotations(i)
        h, w = ann.size
        boxes = ann.boxes[~ann.ignore].astype(np.float64)
        labels.append(ann.labels[~ann.ignore])
        wh.append((boxes[:, 2:] - boxes[:, :2]) / [w, h])
    return np.concatenate(labels), np.concatenate(wh)


def test_training_boxes_are_the_annotations_without_a_pixel_read(tmp_path):
    coco = CocoDataset(write_coco(tmp_path / "coco"))
    yolo = open_dataset(write_yolo(tmp_path / "yolo"), "val")
    for dataset in (coco, yolo):
        labels, wh = dataset.training_boxes()
        want_labels, want_wh = expected_labels(dataset)
        assert labels.tolist() == want_labels.tolist()
        np.testing.assert_allclose(wh, want_wh, rtol=1e-6)
    # data_factory: classes 0, 2 | 1, (0 ignored) | - | 2
    assert np.bincount(coco.training_boxes()[0], minlength=3).tolist() == [1, 1, 2]
    np.testing.assert_allclose(coco.training_boxes()[1][0], [26 / 64, 34 / 48])
    assert sum(len(objects) for *_, objects in IMAGES) == 5


@pytest.mark.parametrize("name", ["kangaroo", "coco128-train"])
def test_training_boxes_of_the_shared_datasets(name):
    root = SHARED / "datasets" / name
    if not root.is_dir():
        pytest.skip(f"the shared dataset {root} is not there")
    dataset = open_dataset(root if name == "kangaroo" else root / "data.yaml",
                           "all" if name == "kangaroo" else "train")
    labels, wh = dataset.training_boxes()
    want_labels, want_wh = expected_labels(dataset)
    counts = np.bincount(labels, minlength=len(dataset.names))
    assert counts.tolist() == np.bincount(want_labels, minlength=len(dataset.names)).tolist()
    assert counts.sum() > 100
    np.testing.assert_allclose(wh, want_wh, rtol=1e-5, atol=1e-7)
    assert ((wh > 0) & (wh <= 1.01)).all()


def test_the_label_picture(tmp_path):
    """80 named classes widen the picture; a training set without a box still gets one."""
    many = [f"class {k}" for k in range(80)]
    wh = np.random.default_rng(0).uniform(0.01, 1.0, (240, 2))
    save_label_picture(np.arange(80).repeat(3), wh, many, tmp_path / "labels.png")
    save_label_picture(np.zeros(0, np.int64), np.zeros((0, 2)), NAMES, tmp_path / "none.png")
    sizes = {}
    for name in ("labels", "none"):
        with Image.open(tmp_path / f"{name}.png") as picture:
            assert picture.format == "PNG"
            sizes[name] = picture.size
            pixels = np.asarray(picture.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # something is drawn
    assert sizes["none"] == (1000, 500)
    assert sizes["labels"] == (round(100 * (0.16 * 80 + 6)), 500)  # room for 80 names
    with pytest.raises(ValueError, match="240 labels for 2 box sizes"):
        save_label_picture(np.arange(80).repeat(3), wh[:2], many, tmp_path / "bad.png")
