"""The improved recipe's mosaic, mixup and random zoom: boxes follow the pixels, cut boxes are
dropped, the blend is exact, every draw is a function of (seed, position), and with the
switches off the inputs are darknet's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from data_factory import write_yolo
from yolov3.datasets.open import open_dataset
from yolov3.datasets.sample import Sample
from yolov3.datasets.synthetic import SyntheticShapes
from yolov3.inputs.augment import CANVAS_GREY, RandomBoxOrder, TrainTransform, spawn
from yolov3.inputs.loader import (
    MultiScale,
    TrainBatchSampler,
    augment_rng,
    make_train_loader,
    mix_rng,
)
from yolov3.inputs.mix import (
    MIXUP_ALPHA,
    Mix,
    mixup,
    mosaic,
    mosaic_centre,
    random_subset,
)

NO_HSV = {"hue": 0.0, "saturation": 1.0, "exposure": 1.0}
# Image k of a mosaic test: background BACKGROUNDS[k], one rectangle of RECTANGLES[k]. The two
# differ in green alone, so that the blend of an edge is nearer to one of them than to any other
# image's colour or to the canvas grey.
BACKGROUNDS = np.array([[255, 0, 0], [0, 0, 255], [255, 0, 255], [0, 0, 0]], np.uint8)
RECTANGLES = BACKGROUNDS + np.array([0, 255, 0], np.uint8)
PALETTE = np.concatenate([BACKGROUNDS, RECTANGLES, [[CANVAS_GREY] * 3]]).astype(np.int64)


def framed_sample(rng: np.random.Generator, k: int) -> Sample:
    """An image of random size and aspect in BACKGROUNDS[k] with a rectangle of RECTANGLES[k]
    and its box, labelled k."""
    h, w = (int(v) for v in rng.integers(60, 400, 2))
    bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
    x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    image = np.empty((h, w, 3), np.uint8)
    image[:] = BACKGROUNDS[k]
    image[y : y + bh, x : x + bw] = RECTANGLES[k]
    return Sample(image, np.array([[x, y, x + bw, y + bh]], np.float32), np.array([k]), k,
                  f"{k}.png")


def nearest_colour(image: np.ndarray) -> np.ndarray:
    """(H, W) index into PALETTE of each pixel's nearest colour."""
    distance = np.abs(image[:, :, None, :].astype(np.int64) - PALETTE).sum(axis=3)
    return distance.argmin(axis=2)


def pixel_box(mask: np.ndarray) -> np.ndarray | None:
    """x1, y1, x2, y2 (pixel edges) of the True pixels of a (H, W) mask, None if none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0])


@pytest.mark.parametrize("seed", range(30))
def test_mosaic_boxes_match_the_pixels_and_each_quadrant_holds_its_image(seed):
    rng = np.random.default_rng(seed)
    samples = [framed_sample(rng, k) for k in range(4)]
    input_hw = (320, 416) if seed % 2 else (384, 384)
    cx, cy = mosaic_centre(input_hw, np.random.default_rng(100 + seed))
    out = mosaic(samples, input_hw, np.random.default_rng(100 + seed))
    assert out.image.shape == (*input_hw, 3) and out.image.dtype == np.uint8
    assert out.file_name == "mosaic of 0.png, 1.png, 2.png, 3.png"
    colours = nearest_colour(out.image)
    # The pixels beside the centre belong to images 0 (top-left) .. 3 (bottom-right).
    for k, (y, x) in enumerate([(cy - 1, cx - 1), (cy - 1, cx), (cy, cx - 1), (cy, cx)]):
        assert colours[y, x] in (k, 4 + k), (k, colours[y, x])
    for box, label in zip(out.boxes, out.labels, strict=True):
        found = pixel_box(colours == 4 + label)
        assert found is not None
        np.testing.assert_allclose(box, found, atol=1.0)
    for k in sorted(set(range(4)) - set(out.labels.tolist())):  # dropped: barely visible
        visible = np.count_nonzero(colours == 4 + k)
        bx1, by1, bx2, by2 = samples[k].boxes[0]
        h, w = samples[k].size
        zoom = max(input_hw) / max(h, w)
        assert visible < 0.2 * (bx2 - bx1) * (by2 - by1) * zoom**2 + 2 * (bx2 - bx1 + by2 - by1)


def square_sample(name: str, boxes: list[list[float]], ignore: list[bool]) -> Sample:
    """A grey-blue 400 x 400 image with ``boxes`` labelled 0, 1, ..."""
    image = np.full((400, 400, 3), (60, 80, 100), np.uint8)
    return Sample(image, np.array(boxes, np.float32).reshape(-1, 4), np.arange(len(boxes)), 1,
                  name, np.array(ignore, bool))


def test_boxes_cut_by_the_mosaic_keep_20_percent_of_their_area_or_go():
    """400 x 400 images into a 400 x 400 input keep their scale. The top-left image shows its
    part x >= 400 - cx, y >= 400 - cy, at canvas x - (400 - cx); the bottom-right one its part
    x < 400 - cx, y < 400 - cy, at canvas x + cx."""
    cx, cy = mosaic_centre((400, 400), np.random.default_rng(4))
    left, top = 400 - cx, 400 - cy
    top_left = square_sample("tl", [
        [left - 85, top + 10, left + 15, top + 60],  # 15 % visible: dropped
        [left - 75, top + 10, left + 25, top + 60],  # 25 % visible: kept
        [left + 10, top - 48.5, left + 60, top + 1.5],  # 1.5 px high: dropped
        [left + 10, top + 70, left + 40, top + 100],  # whole, ignored: kept, still ignored
    ], [False, False, False, True])
    bottom_right = square_sample("br", [
        [left - 10, 10, left + 90, 50],  # 10 % visible: dropped
        [left - 30, 60, left + 70, 100],  # 30 % visible: kept
    ], [False, False])
    empty = square_sample("e", [], [])
    out = mosaic([top_left, empty, empty, bottom_right], (400, 400), np.random.default_rng(4))
    assert out.labels.tolist() == [1, 3, 1]
    np.testing.assert_allclose(out.boxes, [[0, 10, 25, 60], [10, 70, 40, 100],
                                           [370, cy + 60, 400, cy + 100]])
    assert out.ignore.tolist() == [False, True, False]
    assert out.file_name == "mosaic of tl, e, e, br"


def test_mixup_is_the_exact_blend_and_the_targets_of_both():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(3, 32, 48, generator=g), torch.tensor([[1, 0.5, 0.5, 0.2, 0.3]]))
    b = (torch.rand(3, 32, 48, generator=g), torch.tensor([[0, 0.1, 0.2, 0.1, 0.1],
                                                           [2, 0.7, 0.7, 0.3, 0.2]]))
    image, targets = mixup(a, b, np.random.default_rng(5))
    r = np.random.default_rng(5).beta(MIXUP_ALPHA, MIXUP_ALPHA)
    assert 0.3 < r < 0.7 and r != 0.5
    assert torch.equal(image, a[0] * r + b[0] * (1 - r))
    np.testing.assert_allclose(image.double(), a[0].double() * r + b[0].double() * (1 - r),
                               atol=1e-6)
    assert torch.equal(targets, torch.cat([a[1], b[1]]))
    ratios = np.random.default_rng(0).beta(MIXUP_ALPHA, MIXUP_ALPHA, 4000)
    assert abs(ratios.mean() - 0.5) < 0.01 and 0.05 < ratios.std() < 0.07  # sd 1/sqrt(260)
    with pytest.raises(ValueError, match="different sizes"):
        mixup(a, (b[0][:, :16], b[1]), np.random.default_rng(0))


def test_random_subset_keeps_the_cap_and_draws_only_above_it():
    targets = torch.arange(40, dtype=torch.float32).reshape(8, 5)
    rng = np.random.default_rng(1)
    state = rng.bit_generator.state
    assert random_subset(targets, 8, rng) is targets and rng.bit_generator.state == state
    subsets = [random_subset(targets, 3, rng) for _ in range(20)]
    assert all(len(s) == 3 and len({row[0].item() for row in s}) == 3 for s in subsets)
    assert all(set(s[:, 0].tolist()) <= set(targets[:, 0].tolist()) for s in subsets)
    assert len({tuple(s[:, 0].tolist()) for s in subsets}) > 5  # a random subset each time


@pytest.mark.parametrize("placing", [True, False])
def test_zoom_crops_and_the_boxes_stay_on_their_pixels(placing):
    """Zoom factors in [0.5, 1.5] (the first draw without jitter): one above 1 enlarges the image
    beyond the 256 x 256 input along its longer side and cuts it; the whole image's box then
    spans the input from edge to edge and every box still covers its rectangle."""
    transform = TrainTransform(jitter=0.0, random_placing=placing, flip=0.0, scale=0.5,
                               **NO_HSV)
    side, zooms, cut = 256, [], 0
    for seed in range(16):
        rng = np.random.default_rng(seed)
        sample = framed_sample(rng, seed % 4)
        h, w = sample.size
        whole = Sample(sample.image, np.concatenate([sample.boxes, [[0, 0, w, h]]]),
                       np.array([4 + seed % 4, seed % 4]), 1, "z")  # rectangle, whole image
        zooms.append(np.random.default_rng(seed + 50).uniform(0.5, 1.5))
        image, targets = transform(whole, (side, side), np.random.default_rng(seed + 50))
        boxes = box_convert(targets[:, 1:], "cxcywh", "xyxy").numpy() * side
        colours = nearest_colour(np.round(image.permute(1, 2, 0).numpy() * 255).astype(int))
        assert targets[:, 0].tolist() == whole.labels.tolist()  # nothing dropped here
        rect, frame = boxes
        np.testing.assert_allclose(rect, pixel_box(colours == 4 + seed % 4), atol=1.0)
        np.testing.assert_allclose(frame, pixel_box(colours != 8), atol=1.0)  # not grey
        long_side = max(h, w) * min(side / h, side / w) * zooms[-1]
        if long_side > side + 1:  # cut: the image fills the input along its longer side
            cut += 1
            assert (colours != 8).any(axis=0 if w >= h else 1).all()
            axis = [0, 2] if w >= h else [1, 3]
            assert frame[axis].tolist() == [0, side]
            if not placing:  # centred: cut alike on both sides, within a pixel
                placed = whole.boxes[0, axis] * long_side / max(h, w) - (long_side - side) / 2
                np.testing.assert_allclose(rect[axis], placed.clip(0, side), atol=1.5)
    assert min(zooms) < 0.7 and max(zooms) > 1.3 and cut >= 4


def test_zoom_off_draws_nothing_more():
    """scale 0 is darknet's transform draw for draw: the generator ends in the same state and
    the output is the default transform's, bit for bit."""
    sample = framed_sample(np.random.default_rng(3), 1)
    for seed in range(5):
        a_rng, b_rng = np.random.default_rng(seed), np.random.default_rng(seed)
        a = TrainTransform()(sample, (320, 352), a_rng)
        b = TrainTransform(scale=0.0)(sample, (320, 352), b_rng)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert a_rng.bit_generator.state == b_rng.bit_generator.state
    zoomed = TrainTransform(scale=0.3)(sample, (320, 352), np.random.default_rng(0))
    assert not torch.equal(zoomed[1], TrainTransform()(sample, (320, 352),
                                                       np.random.default_rng(0))[1])


# --- the loader ----------------------------------------------------------------------------

SMALL = MultiScale(64, 128, interval=2)
TRANSFORM = RandomBoxOrder(TrainTransform(max_labels=6, scale=0.3))


def batches(loader) -> list:
    return [(x, t, info) for x, t, info in loader]


def assert_same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for (xa, ta, ia), (xb, tb, ib) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and ia == ib
        assert all(torch.equal(u, v) for u, v in zip(ta, tb, strict=True))


def test_with_mix_off_the_loader_is_darknets_transform_of_each_position():
    """Mix(0, 0) and no Mix are the same inputs, and each is the transform of the position's
    image with its augmentation generator alone: nothing else is drawn."""
    data = SyntheticShapes("train", num_images=12, image_size=80)
    common = {"multiscale": SMALL, "seed": 4, "max_iterations": 3,
              "transform": RandomBoxOrder(TrainTransform(max_labels=3))}
    plain = batches(make_train_loader(data, 4, **common))
    assert_same(plain, batches(make_train_loader(data, 4, mix=Mix(0.0, 0.0), **common)))
    for images, targets, info in plain:
        for k, (index, position) in enumerate(zip(info.indices, info.positions, strict=True)):
            image, target = common["transform"](data[index], info.input_hw,
                                                augment_rng(4, position))
            assert torch.equal(images[k], image) and torch.equal(targets[k], target)


def test_a_mixed_position_is_its_plan_built_from_its_two_generators():
    """Each position rebuilt by hand from the documented draws: its plan and mosaic centre from
    the mix generator, its transform from the augmentation generator, the partner from a child
    of the mix generator, the blend and the cap from the mix generator."""
    data = SyntheticShapes("train", num_images=10, image_size=96, max_objects=5)
    mix = Mix(mosaic=0.6, mixup=0.6)
    (images, targets, info), = batches(make_train_loader(
        data, 16, transform=TRANSFORM, multiscale=MultiScale(96, 96), seed=7, max_iterations=1,
        mix=mix))
    kinds = set()
    for k, (index, position) in enumerate(zip(info.indices, info.positions, strict=True)):
        generator = mix_rng(7, position)
        plan = mix.plan(len(data), generator)
        sample = data[index]
        if plan.others:
            sample = mosaic([sample, *(data[i] for i in plan.others)], (96, 96), generator)
        expected = TRANSFORM(sample, (96, 96), augment_rng(7, position))
        if plan.partner:
            child = spawn(generator)
            partner = [data[i] for i in plan.partner]
            partner = mosaic(partner, (96, 96), child) if len(partner) == 4 else partner[0]
            image, both = mixup(expected, TRANSFORM(partner, (96, 96), child), generator)
            expected = image, random_subset(both, 6, generator)
        kinds.add((bool(plan.others), len(plan.partner)))
        assert torch.equal(images[k], expected[0]) and torch.equal(targets[k], expected[1])
        assert len(targets[k]) <= 6
    assert kinds == {(False, 0), (False, 1), (True, 0), (True, 4)}  # every kind was seen


def test_mixed_inputs_are_the_same_whatever_the_workers_and_after_a_resume():
    data = SyntheticShapes("train", num_images=20, image_size=80)
    common = {"transform": TRANSFORM, "multiscale": SMALL, "seed": 3, "max_iterations": 4,
              "mix": Mix(mosaic=0.7, mixup=0.4)}
    alone = batches(make_train_loader(data, 4, workers=0, **common))
    assert_same(alone, batches(make_train_loader(data, 4, workers=2, **common)))
    assert_same(alone[2:], batches(make_train_loader(data, 4, start_iteration=2, **common)))
    plain = batches(make_train_loader(data, 4, **{**common, "mix": None}))
    assert not torch.equal(alone[0][0], plain[0][0])


def test_the_mosaic_keeps_a_random_max_labels_of_its_boxes():
    data = SyntheticShapes("train", num_images=8, image_size=96, max_objects=5)
    transform = RandomBoxOrder(TrainTransform(max_labels=4, jitter=0.0, flip=0.0, **NO_HSV))
    (_, targets, _), = batches(make_train_loader(
        data, 8, transform=transform, multiscale=MultiScale(96, 96), max_iterations=1,
        mix=Mix(mosaic=1.0)))
    assert all(len(t) <= 4 for t in targets) and max(len(t) for t in targets) == 4


def test_unreadable_images_mixed_in_are_replaced_and_counted(tmp_path):
    """A YOLO dataset of 4 images, the first written as garbage: every time it is drawn, as a
    position's own image, in a mosaic or as a partner, the next one stands in and its message
    is counted."""
    root = write_yolo(tmp_path / "yolo").parent
    (root / "images" / "val" / "1.png").write_bytes(b"not a png" * 20)
    data = open_dataset(root / "data.yaml", "val")
    mix = Mix(mosaic=0.5, mixup=0.5)
    loader = make_train_loader(data, 4, transform=TRANSFORM, multiscale=MultiScale(64, 64),
                               seed=1, max_iterations=3, mix=mix)
    bad = data.files.index(root / "images" / "val" / "1.png")
    sampler = TrainBatchSampler(len(data), 4, multiscale=MultiScale(64, 64), seed=1,
                                max_iterations=3)
    for (_, _, info), keys in zip(batches(loader), sampler, strict=True):
        expected = 0
        for key in keys:
            plan = mix.plan(len(data), mix_rng(1, key.position))
            expected += [key.index, *plan.others, *plan.partner].count(bad)
        assert len(info.skipped) == expected
        assert all("1.png" in message for message in info.skipped)
        assert bad not in info.indices
    assert len(loader.skipped) > 3
