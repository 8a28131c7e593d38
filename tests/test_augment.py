"""Darknet's training augmentation and the evaluation letterbox: boxes follow the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert, box_iou

from yolov3.datasets.sample import Sample
from yolov3.errors import ConfigError
from yolov3.images import letterbox
from yolov3.inputs.augment import (
    CANVAS_GREY,
    EvalTransform,
    TrainTransform,
    distort_hsv,
    place_boxes,
)
from yolov3.train.config import load_config

COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
NO_HSV = {"hue": 0.0, "saturation": 1.0, "exposure": 1.0}


def rectangles_sample(rng: np.random.Generator) -> Sample:
    """A black image of random size with up to four rectangles of distinct pure colours; the
    class of each box is its colour's index."""
    h, w = (int(v) for v in rng.integers(200, 700, 2))
    image = np.zeros((h, w, 3), np.uint8)
    boxes = []
    for colour in COLOURS:
        bw, bh = int(rng.integers(w // 6, w // 3)), int(rng.integers(h // 6, h // 3))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        image[y : y + bh, x : x + bw] = colour
        boxes.append([x, y, x + bw, y + bh])
    # Later rectangles may cover earlier ones: the ground truth is what stays visible.
    visible = [pixel_box(np.all(image == c, axis=2)) for c in COLOURS]
    keep = [i for i, b in enumerate(visible) if b is not None]
    return Sample(image, np.array([visible[i] for i in keep], np.float32), np.array(keep), 1, "r")


def pixel_box(mask: np.ndarray) -> list[float] | None:
    """x1, y1, x2, y2 (pixel edges) of the True pixels of a (H, W) mask, None if none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]


def to_pixels(targets: torch.Tensor, input_hw: tuple[int, int]) -> torch.Tensor:
    h, w = input_hw
    return box_convert(targets[:, 1:], "cxcywh", "xyxy") * torch.tensor([w, h, w, h])


@pytest.mark.parametrize("seed", range(40))
def test_boxes_stay_on_their_objects(seed):
    rng = np.random.default_rng(seed)
    sample = rectangles_sample(rng)
    transform = TrainTransform(jitter=0.3, random_placing=True, flip=0.5, **NO_HSV)
    side = int(rng.choice([320, 416, 608]))
    input_hw = (side, side) if seed % 2 else (side, side - 96)  # non-square inputs work too
    image, targets = transform(sample, input_hw, rng)
    assert image.shape == (3, *input_hw) and image.dtype == torch.float32
    assert len(targets) == len(sample.boxes)
    pixels = image.permute(1, 2, 0).numpy()
    boxes = to_pixels(targets, input_hw)
    for label, box in zip(targets[:, 0].long(), boxes, strict=True):
        colour = COLOURS[label] / 255.0
        mask = np.abs(pixels - colour).max(axis=2) < 0.5
        found = torch.tensor([pixel_box(mask)])
        assert box_iou(box[None], found).item() > 0.9, (seed, int(label))


def test_hsv_distortion_leaves_geometry_alone():
    sample = rectangles_sample(np.random.default_rng(3))
    off = TrainTransform(**NO_HSV)(sample, (416, 416), np.random.default_rng(7))
    on = TrainTransform()(sample, (416, 416), np.random.default_rng(7))
    assert torch.equal(off[1], on[1])
    assert not torch.equal(off[0], on[0])
    # The grey canvas stays grey (no saturation to scale, hue meaningless), only its value moves.
    corner = on[0][:, 0, 0]
    assert torch.allclose(corner, corner.mean().expand(3), atol=1e-5)


def test_distort_hsv_values():
    px = np.array([[[1, 0, 0], [0.4, 0.4, 0.4], [0.8, 0.4, 0.4]]], np.float32)
    close = np.testing.assert_allclose
    close(distort_hsv(px, 1 / 3, 1, 1)[0, 0], [0, 1, 0], atol=1e-5)  # red -> green
    close(distort_hsv(px, -1 / 3, 1, 1)[0, 0], [0, 0, 1], atol=1e-5)  # red -> blue (wraps)
    close(distort_hsv(px, 0.1, 1.4, 1)[0, 1], [0.4] * 3, atol=1e-5)  # grey has no hue/sat
    close(distort_hsv(px, 0, 0.5, 1)[0, 0], [1, 0.5, 0.5], atol=1e-5)
    close(distort_hsv(px, 0, 1, 0.5)[0, 0], [0.5, 0, 0], atol=1e-5)
    # As darknet: the scaled HSV goes back to RGB unclipped, then RGB is clamped to [0, 1].
    close(distort_hsv(px, 0, 1, 2)[0, 2], [1, 0.8, 0.8], atol=1e-5)
    close(distort_hsv(px, 0, 3, 1)[0, 2], [0.8, 0, 0], atol=1e-5)


def test_jitter_sets_the_longer_side_without_random_scale():
    """The whole image's box spans the input along one side, and its aspect stays within the
    jitter's reach: new_ar in [ar * 0.7 / 1.3, ar * 1.3 / 0.7]."""
    h, w = 300, 400
    sample = Sample(np.zeros((h, w, 3), np.uint8), np.array([[0, 0, w, h]], np.float32),
                    np.array([0]), 1, "x")
    transform = TrainTransform(jitter=0.3, flip=0, **NO_HSV)
    rng = np.random.default_rng(0)
    aspects = []
    for _ in range(300):
        _, t = transform(sample, (416, 416), rng)
        tw, th = t[0, 3].item() * 416, t[0, 4].item() * 416
        assert max(tw, th) == pytest.approx(416, abs=1e-3)
        aspects.append(tw / th)
    aspects = np.array(aspects) / (w / h)
    assert aspects.min() >= 0.7 / 1.3 - 0.01 and aspects.max() <= 1.3 / 0.7 + 0.01
    assert aspects.min() < 0.7 and aspects.max() > 1.4  # the jitter's range is really used


def test_flip_mirrors_image_and_boxes():
    sample = rectangles_sample(np.random.default_rng(1))
    fixed = {"jitter": 0.0, "random_placing": False, **NO_HSV}
    rng = np.random.default_rng(0)
    plain_img, plain = TrainTransform(flip=0.0, **fixed)(sample, (416, 352), rng)
    flip_img, flipped = TrainTransform(flip=1.0, **fixed)(sample, (416, 352), rng)
    assert torch.equal(flip_img, plain_img.flip(2))
    assert torch.allclose(flipped[:, 1], 1 - plain[:, 1], atol=1e-6)
    assert torch.equal(flipped[:, [0, 2, 3, 4]], plain[:, [0, 2, 3, 4]])


def test_centred_placement_without_jitter_is_darknets_letterbox():
    """No jitter, no random placing: the image scaled to fit and centred on grey 127, boxes
    scaled and shifted alike."""
    image = np.full((100, 200, 3), 255, np.uint8)
    sample = Sample(image, np.array([[50, 20, 150, 80]], np.float32), np.array([2]), 1, "x")
    fixed = TrainTransform(jitter=0.0, random_placing=False, flip=0.0, **NO_HSV)
    out, targets = fixed(sample, (416, 416), np.random.default_rng())
    # 200 x 100 -> 416 x 208, pad 104 above and below.
    grey = CANVAS_GREY / 255
    assert torch.allclose(out[:, :104], torch.tensor(grey))
    assert torch.allclose(out[:, 312:], torch.tensor(grey))
    assert torch.allclose(out[:, 104:312], torch.tensor(1.0))
    expected = torch.tensor([[2, 208 / 416, (104 + 50 * 2.08) / 416, 208 / 416, 124.8 / 416]])
    assert torch.allclose(targets, expected, atol=1e-6)


def test_place_boxes_math():
    sample = Sample(np.zeros((10, 10, 3), np.uint8),
                    np.array([[10, 20, 30, 60], [0, 0, 100, 100]], np.float32),
                    np.array([4, 1]), 1, "x", ignore=np.array([False, True]))
    t = place_boxes(sample, (2.0, 0.5), (5.0, 7.0), (100, 200))
    # x: 10*2+5 = 25 .. 65; y: 20*.5+7 = 17 .. 37; the ignored box is not a target.
    assert torch.allclose(t, torch.tensor([[4, 45 / 200, 27 / 100, 40 / 200, 20 / 100]]))
    t = place_boxes(sample, (2.0, 0.5), (5.0, 7.0), (100, 200), flip=True)
    assert torch.allclose(t, torch.tensor([[4, 155 / 200, 27 / 100, 40 / 200, 20 / 100]]))


def test_degenerate_ignored_and_outside_boxes_are_dropped_or_clipped():
    boxes = np.array([
        [10, 10, 11.5, 400],    # 1.5 px wide: under a pixel once halved
        [10, 10, 400, 11.5],    # under a pixel high
        [100, 100, 300, 300],   # kept
        [500, 500, 790, 800],   # kept, touches the corner
        [0, 0, 800, 800],       # ignored (crowd)
    ], np.float32)
    sample = Sample(np.zeros((800, 800, 3), np.uint8), boxes, np.arange(5), 1, "x",
                    ignore=np.array([False, False, False, False, True]))
    _, t = EvalTransform()(sample, (400, 400))
    assert t[:, 0].tolist() == [2, 3]
    # Boxes beyond the canvas (as placing rounding may make them) are clipped to it.
    t = place_boxes(sample, (0.5, 0.5), (20.0, 20.0), (400, 400))
    assert t[:, 0].tolist() == [2, 3]
    x2 = (t[1, 1] + t[1, 3] / 2) * 400
    assert x2.item() == pytest.approx(400) and (t[:, 1:] <= 1).all()


def test_at_most_50_labels_the_first_ones():
    n = 80
    x = np.arange(n, dtype=np.float32) * 5
    boxes = np.stack([x, x, x + 20, x + 20], 1)
    sample = Sample(np.zeros((500, 500, 3), np.uint8), boxes, np.arange(n), 1, "x")
    _, t = TrainTransform()(sample, (320, 320), np.random.default_rng(0))
    assert t[:, 0].tolist() == list(range(50))
    _, t = TrainTransform(max_labels=7)(sample, (320, 320), np.random.default_rng(0))
    assert len(t) == 7


def test_eval_transform_is_the_detectors_letterbox():
    rng = np.random.default_rng(5)
    sample = rectangles_sample(rng)
    image, _ = EvalTransform()(sample, (416, 416))
    expected, _ = letterbox(sample.image, (416, 416))
    assert torch.equal(image, expected)


def test_eval_targets_and_to_image_by_hand():
    """200 x 100 into 416 x 416, derived by hand: scale 416 / 200 = 2.08 on both axes,
    resized to 416 x 208, pad (416 - 208) / 2 = 104 above. Where the pixels land is
    tests/test_geometry.py's subject; these are the numbers the mapping must give."""
    sample = Sample(np.zeros((100, 200, 3), np.uint8), np.array([[50, 20, 150, 80]], np.float32),
                    np.array([2]), 1, "x")
    _, targets = EvalTransform()(sample, (416, 416))
    # x 50..150 -> 104..312, y 20..80 -> 104 + 41.6 .. 104 + 166.4
    expected = torch.tensor([[2, 208 / 416, (104 + 104) / 416, 208 / 416, 124.8 / 416]])
    assert torch.allclose(targets, expected, atol=1e-6)
    _, info = letterbox(sample.image, (416, 416))
    back = info.to_image(torch.tensor([[104.0, 145.6, 312.0, 270.4], [0, 104, 416, 312],
                                       [-10, 0, 500, 416]]))
    torch.testing.assert_close(back, torch.tensor([[50.0, 20, 150, 80], [0, 0, 200, 100],
                                                   [0, 0, 200, 100]]))  # clipped to the image


@pytest.mark.parametrize(("image_hw", "scale_xy", "pad_xy"), [
    # h 1000, w 7: new_h 416, new_w = int(7 * 0.416) = 2 (not 2.912): scale_x 2 / 7,
    # pad_x (416 - 2) // 2 = 207
    ((1000, 7), (2 / 7, 0.416), (207, 0)),
    # h 300, w 4000: new_w 416, new_h = int(300 * 0.104) = 31 (31.2): pad_y (416 - 31) // 2
    ((300, 4000), (0.104, 31 / 300), (0, 192)),
    # 480 x 640: 416 x 312, pad_y 52, one scale 0.65
    ((480, 640), (0.65, 0.65), (0, 52)),
])
def test_letterbox_geometry_by_hand_on_each_axis(image_hw, scale_xy, pad_xy):
    """An elongated image's short side is rounded down to whole pixels, so each axis has its
    own scale; the numbers are worked out by hand above."""
    _, info = letterbox(np.zeros((*image_hw, 3), np.uint8), (416, 416))
    assert (info.scale_x, info.scale_y) == pytest.approx(scale_xy)
    assert (info.pad_x, info.pad_y) == pad_xy
    h, w = image_hw
    sx, sy = scale_xy
    px, py = pad_xy
    # the image's quarter box, placed by hand, comes back
    placed = torch.tensor([[px + sx * w / 4, py + sy * h / 4, px + sx * 3 * w / 4,
                            py + sy * 3 * h / 4]], dtype=torch.float64)
    torch.testing.assert_close(info.to_image(placed), torch.tensor(
        [[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], dtype=torch.float64))
    assert info.to_image(torch.tensor([[0.0, 0.0, 416.0, 416.0]])).tolist() == [[0, 0, w, h]]


def test_same_generator_same_result_and_empty_samples():
    sample = rectangles_sample(np.random.default_rng(2))
    a = TrainTransform()(sample, (352, 352), np.random.default_rng(11))
    b = TrainTransform()(sample, (352, 352), np.random.default_rng(11))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    empty = Sample(sample.image, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 1, "e")
    image, targets = TrainTransform()(empty, (320, 320), np.random.default_rng(0))
    assert targets.shape == (0, 5) and targets.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1


@pytest.mark.parametrize("bad", ["augment.jitter=1.2", "augment.hue=-0.1",
                                 "augment.saturation=0.5", "augment.exposure=.nan",
                                 "augment.flip=2.0", "data.max_labels=0"])
def test_bad_settings_are_config_errors_when_the_config_loads(bad):
    key = bad.split("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=[bad])


def test_the_config_section_builds_the_transform():
    config = load_config(overrides=["augment.jitter=0.2", "augment.flip=0", "data.max_labels=7"])
    transform = config.augment.build(config.data.max_labels).transform
    assert isinstance(transform, TrainTransform)
    assert (transform.jitter, transform.flip, transform.max_labels) == (0.2, 0.0, 7)
    assert (transform.hue, transform.saturation, transform.exposure) == (0.1, 1.5, 1.5)
