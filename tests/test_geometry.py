"""Where the pixels land: images with known content go through the evaluation letterbox and the
training transform, the pixels are found again in the network input, and the mapping the code
claims (the training targets, ``Letterbox.to_image``) is checked against them.

Coordinates: a pixel ``k`` covers [k, k + 1) ("edge" coordinates), its centre is at k + 0.5; a
box edge at x lies between pixels. The two resize conventions in the code:

- training (:class:`TrainTransform`, DeNA's ``cv2.resize`` with ``INTER_LINEAR``): half-pixel
  centres, output pixel centre X samples the image at x = X * w / new_w, so a point at x lands
  at X = x * new_w / w (+ the placement offset): exactly the scale the targets use;
- evaluation (:func:`yolov3.images.letterbox`): the same half-pixel convention, chosen so that
  both sides place an image alike and where ``Letterbox`` (and darknet's ``correct_yolo_boxes``)
  map boxes, with new_w / w. Darknet's ``resize_image`` (``w_scale = (im.w - 1) / (w - 1)``,
  ``align_corners=True``) would put a point at X = (x - 0.5) * (new_w - 1) / (w - 1) + 0.5
  (+ pad): up to 1.5 input pixels off its mapped box at a 4x enlargement.

The measurement needs no formula of the code: a ramp image holds its own pixel index along one
axis (green: the index, red: 16 x the index modulo 256, a steep sawtooth that uint8 rounding
barely moves; blue 255 marks the image against the canvas grey), so each pixel of the network
input says which image coordinate it shows. Bilinear interpolation of a linear ramp is exact,
so a straight-line fit through the interior pixels gives the mapping to about a hundredth of a
pixel (measured on the training transform: under 0.02 px). A shallow ramp would not do: OpenCV's
fixed-point uint8 resize is off by up to 0.6 of a level, half a pixel of a one-level-per-pixel
ramp enlarged 4x.

Also drawn: white rectangles, whose edges are found as the 0.5 crossings of their profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_convert

from yolov3.datasets.sample import Sample
from yolov3.images import letterbox
from yolov3.inputs.augment import CANVAS_GREY, EvalTransform, TrainTransform

NO_HSV = {"hue": 0.0, "saturation": 1.0, "exposure": 1.0}
PLAIN = TrainTransform(jitter=0.0, random_placing=False, flip=0.0, **NO_HSV)
# Input pixels. The fit's accuracy: under 0.02 px (training transform, measured); the two
# conventions differ by 0.25 to 1.5 input pixels at the image edges in the cases below.
TOLERANCE = 0.05
TOOTH = 16  # levels per image pixel of the fine ramp

# (image h, w), network input (h, w): a 4x enlargement, a halving, an elongated image, a
# non-square input.
CASES = {
    "x4": ((78, 104), (416, 416)),
    "x0.5": ((200, 250), (128, 128)),
    "tall": ((255, 60), (416, 416)),
    "wide-input": ((120, 200), (320, 416)),
}


def ramp_image(h: int, w: int, axis: int) -> np.ndarray:
    """A ramp along ``axis`` (1: x, 0: y; h, w <= 256). Red: 16 x the pixel index modulo 256
    (a sawtooth, 16 levels per pixel: uint8 rounding moves it by a small fraction of a pixel);
    green: the index (coarse, to unwrap the sawtooth); blue: 255, the image against the canvas
    grey."""
    k = np.arange((h, w)[axis])
    shape = (1, w) if axis == 1 else (h, 1)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = (TOOTH * k % 256).reshape(shape)
    image[..., 1] = k.reshape(shape)
    image[..., 2] = 255
    return image


def axis_mapping(network_input: torch.Tensor, axis: int, n: int) -> np.ndarray:
    """(a, b) with x_image = a * X_input + b in edge coordinates along ``axis``, fitted to the
    pixels of a :func:`ramp_image` of ``n`` pixels along it in the network input (interior
    pixels of the image only)."""
    px = network_input.permute(1, 2, 0).numpy().astype(np.float64) * 255
    ys, xs = np.nonzero(px[..., 2] > 254.5)
    along, across = (xs, ys) if axis == 1 else (ys, xs)
    idx = np.arange(along.min() + 2, along.max() - 1)
    band = np.arange(across.min() + 2, across.max() - 1)
    values = px[np.ix_(band, idx)].mean(0) if axis == 1 else px[np.ix_(idx, band)].mean(1)
    fine, coarse = values[:, 0] / TOOTH, values[:, 1]
    index = fine + 16 * np.round((coarse - fine) / 16)  # the image pixel (centre) shown
    # Leave out the pixels that mix both sides of a tooth's wrap (centre index 15.5 mod 16)
    # or lie beyond the first or last pixel centre (clamped there).
    from_wrap = np.abs((coarse - 15.5 + 8) % 16 - 8)
    keep = (from_wrap > 2.5) & (coarse > 1.5) & (coarse < n - 2.5)
    assert keep.sum() > 20, "too few pixels to measure"
    centres = idx[keep] + 0.5
    fit = np.polyfit(centres, index[keep] + 0.5, 1)
    close = np.abs(np.polyval(fit, centres) - index[keep] - 0.5) < 0.25
    return np.polyfit(centres[close], index[keep][close] + 0.5, 1)


def measured_mapping(run, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) mappings of ``run``, a function from an (h, w, 3) uint8 image to the network
    input, measured on a ramp along each axis (``run`` must place both alike)."""
    return (axis_mapping(run(ramp_image(h, w, 1)), 1, w),
            axis_mapping(run(ramp_image(h, w, 0)), 0, h))


def landing(fit: np.ndarray, x: float) -> float:
    """Where image coordinate ``x`` lands in the input, by the measured fit."""
    a, b = fit
    return (x - b) / a


def edges_landing(fits, h: int, w: int) -> np.ndarray:
    """The image's corners (0, 0) and (w, h), landed: x1, y1, x2, y2 in input pixels."""
    fx, fy = fits
    x = sorted([landing(fx, 0), landing(fx, w)])
    y = sorted([landing(fy, 0), landing(fy, h)])
    return np.array([x[0], y[0], x[1], y[1]])


def target_xyxy(targets: torch.Tensor, input_hw: tuple[int, int]) -> np.ndarray:
    in_h, in_w = input_hw
    scale = torch.tensor([in_w, in_h, in_w, in_h], dtype=torch.float64)
    return (box_convert(targets[:, 1:].double(), "cxcywh", "xyxy") * scale).numpy()


@pytest.mark.parametrize("case", CASES)
def test_letterbox_resizes_with_half_pixel_centres(case) -> None:
    """Independent source: the half-pixel convention of OpenCV's INTER_LINEAR (and PIL's
    bilinear without antialiasing): input pixel centre J + 0.5 shows the image at
    (J + 0.5 - pad) * w / new_w, i.e. in edge coordinates x = (X - pad) * w / new_w."""
    (h, w), input_hw = CASES[case]
    fits = measured_mapping(lambda im: letterbox(im, input_hw)[0], h, w)
    x, info = letterbox(ramp_image(h, w, 1), input_hw)
    new_w, new_h = round(info.scale_x * w), round(info.scale_y * h)
    for fit, n, new, pad in ((fits[0], w, new_w, info.pad_x), (fits[1], h, new_h, info.pad_y)):
        a = n / new
        np.testing.assert_allclose(fit, np.array([a, -pad * a]), rtol=1e-4, atol=1e-3)
    # around the image: darknet's 0.5 grey
    assert (x == 0.5).all(0).sum() == x.shape[1] * x.shape[2] - new_w * new_h


def plain_run(input_hw):
    """The training transform without randomness on an image, as ``measured_mapping`` runs it,
    and the targets of the image's own box."""
    def run(image):
        h, w = image.shape[:2]
        sample = Sample(image, np.array([[0, 0, w, h]], np.float32), np.array([0]), 1, "ramp")
        x, targets = PLAIN(sample, input_hw, np.random.default_rng(0))
        run.targets = targets
        return x
    return run


@pytest.mark.parametrize("case", CASES)
def test_training_resize_puts_pixels_where_its_targets_say(case) -> None:
    """Independent source: OpenCV's documented INTER_LINEAR mapping (half-pixel centres,
    x_src = (X + 0.5) * w / new_w - 0.5 in centre indices), i.e. X = x * new_w / w in edges:
    the whole image's box, as a target, is where the image's pixels are."""
    (h, w), input_hw = CASES[case]
    run = plain_run(input_hw)
    found = edges_landing(measured_mapping(run, h, w), h, w)
    placed = target_xyxy(run.targets, input_hw)[0]
    np.testing.assert_allclose(found, placed, atol=TOLERANCE)
    # around the image: DeNA's grey 127
    x = run(ramp_image(h, w, 1))
    area = round((placed[2] - placed[0]) * (placed[3] - placed[1]))
    grey = torch.isclose(x, torch.tensor(CANVAS_GREY / 255), atol=1e-6).all(0)
    assert grey.sum() == x.shape[1] * x.shape[2] - area


@pytest.mark.parametrize("seed", range(12))
def test_augmented_targets_are_where_the_pixels_land(seed) -> None:
    """Jitter, random placing and a flip: every target box is the drawn box carried by the
    measured mapping (x and y of each corner), to a twentieth of a pixel."""
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(60, 256, 2))
    input_hw = [(416, 416), (320, 416), (256, 192)][seed % 3]
    boxes = []
    for _ in range(3):
        bw, bh = rng.uniform(0.2, 0.6) * w, rng.uniform(0.2, 0.6) * h
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        boxes.append([x1, y1, x1 + bw, y1 + bh])
    boxes = np.array(boxes, np.float32)
    flip = float(seed % 2)  # odd seeds mirror the image
    transform = TrainTransform(jitter=0.3, random_placing=True, flip=flip, **NO_HSV)
    found = {}

    def run(image):  # the same draws for both ramps: the same geometry
        x, found["targets"] = transform(Sample(image, boxes, np.arange(3), 1, "ramp"),
                                        input_hw, np.random.default_rng(1000 + seed))
        return x

    fx, fy = measured_mapping(run, h, w)
    assert (fx[0] < 0) == bool(flip) and fy[0] > 0  # the pixels are mirrored, or not
    for box, target in zip(boxes.astype(np.float64), target_xyxy(found["targets"], input_hw),
                           strict=True):
        xs = sorted([landing(fx, box[0]), landing(fx, box[2])])
        ys = sorted([landing(fy, box[1]), landing(fy, box[3])])
        np.testing.assert_allclose(target, [xs[0], ys[0], xs[1], ys[1]], atol=TOLERANCE)


def eval_run(input_hw, boxes):
    """EvalTransform on an image, as ``measured_mapping`` runs it; the targets in ``.targets``."""
    def run(image):
        sample = Sample(image, boxes, np.arange(len(boxes)), 1, "ramp")
        x, run.targets = EvalTransform()(sample, input_hw)
        return x
    return run


def quarter_box(h: int, w: int) -> np.ndarray:
    return np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)


@pytest.mark.parametrize("case", CASES)
def test_eval_targets_are_where_the_letterboxed_pixels_land(case) -> None:
    (h, w), input_hw = CASES[case]
    run = eval_run(input_hw, np.array([[0, 0, w, h]], np.float32))
    landed = edges_landing(measured_mapping(run, h, w), h, w)
    np.testing.assert_allclose(target_xyxy(run.targets, input_hw)[0], landed, atol=TOLERANCE)


@pytest.mark.parametrize("case", CASES)
def test_to_image_maps_the_letterboxed_pixels_back(case) -> None:
    """A box inside the image (to_image clips at the image's edges): where its corners land in
    the letterboxed input, mapped back, must be the box."""
    (h, w), input_hw = CASES[case]
    box = quarter_box(h, w)[0].astype(np.float64)
    fx, fy = measured_mapping(eval_run(input_hw, quarter_box(h, w)), h, w)
    landed = [landing(fx, box[0]), landing(fy, box[1]), landing(fx, box[2]), landing(fy, box[3])]
    _, info = letterbox(ramp_image(h, w, 1), input_hw)
    back = info.to_image(torch.tensor([landed], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(back, box, atol=TOLERANCE / min(info.scale_x, info.scale_y))


@pytest.mark.parametrize("case", CASES)
def test_training_and_evaluation_place_an_image_alike(case) -> None:
    (h, w), input_hw = CASES[case]
    train = edges_landing(measured_mapping(plain_run(input_hw), h, w), h, w)
    evaluation = edges_landing(measured_mapping(eval_run(input_hw, quarter_box(h, w)), h, w),
                               h, w)
    np.testing.assert_allclose(train, evaluation, atol=TOLERANCE)


def rectangle_edges(profile: np.ndarray) -> tuple[float, float]:
    """The 0.5 crossings (edge coordinates) of a 0..1 profile with one bright run: where a
    bilinearly enlarged step edge lies (exact when the enlargement is 2x or more)."""
    above = profile >= 0.5
    rise = int(np.argmax(above))  # first sample at or above 0.5
    fall = len(above) - int(np.argmax(above[::-1]))  # one past the last
    def crossing(i: int) -> float:  # between samples i - 1 and i
        p0, p1 = profile[i - 1], profile[i]
        return (i - 1) + 0.5 + (0.5 - p0) / (p1 - p0)
    return crossing(rise), crossing(fall)


@pytest.mark.parametrize("seed", range(8))
def test_a_drawn_rectangle_is_where_its_target_says(seed) -> None:
    """A white rectangle on black, at least doubled in size: its edges found in the training
    input (the 0.5 crossings of its middle row and column) are its target box's edges."""
    rng = np.random.default_rng(100 + seed)
    h, w = (int(v) for v in rng.integers(50, 100, 2))
    x1, y1 = int(rng.integers(3, w // 3)), int(rng.integers(3, h // 3))
    x2, y2 = int(rng.integers(w // 2, w - 3)), int(rng.integers(h // 2, h - 3))
    image = np.zeros((h, w, 3), np.uint8)
    image[y1:y2, x1:x2, 0] = 255  # red: the rectangle; blue: the image against the canvas
    image[..., 2] = 255
    sample = Sample(image, np.array([[x1, y1, x2, y2]], np.float32), np.array([0]), 1, "r")
    transform = TrainTransform(jitter=0.3, random_placing=True, flip=0.5, **NO_HSV)
    x, targets = transform(sample, (416, 416), rng)
    target = target_xyxy(targets, (416, 416))[0]
    red = np.where(x[2].numpy() == 1.0, x[0].numpy(), 0.0).astype(np.float64)  # canvas: 0
    cy, cx = (target[1] + target[3]) / 2, (target[0] + target[2]) / 2
    found_x = rectangle_edges(red[int(cy)])
    found_y = rectangle_edges(red[:, int(cx)])
    np.testing.assert_allclose(target, [found_x[0], found_y[0], found_x[1], found_y[1]],
                               atol=TOLERANCE)
