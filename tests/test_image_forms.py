"""Images in every usual form given to ``Detector.detect``: read as meant (the same boxes as the
image's uint8 RGB copy, with the real yolov3-tiny on real photos), or refused with a message
that names the image and says what to give.

Read as meant: uint8 and float (in [0, 1], or 0..255 when any value is above 1) arrays, RGB,
RGBA (alpha dropped), grey (H, W), (H, W, 1) and grey with alpha; uint16 (16-bit) arrays; PIL
images; one image instead of a list; an (N, H, W, 3) array of N images; a non-contiguous view.
Refused: an empty image, channels first, another shape, bool or object pixels, NaN, negative
values, floats above 255, anything that is not an array or a PIL image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from yolov3.errors import DataError
from yolov3.images import load_image, rgb_pixels
from yolov3.inference import Detections, DetectOptions, Detector


@pytest.fixture(scope="module")
def detector(tiny) -> Detector:
    return Detector(tiny, DetectOptions(img_size=320, conf=0.1))


@pytest.fixture(scope="module")
def rgb(photos) -> np.ndarray:
    return load_image(photos["coffee"])


@pytest.fixture(scope="module")
def grey(rgb) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def assert_same(found: list[Detections], expected: list[Detections]) -> None:
    assert len(found) == len(expected)
    for a, b in zip(found, expected, strict=True):
        assert torch.equal(a.labels, b.labels)
        assert torch.equal(a.boxes, b.boxes)
        assert torch.equal(a.scores, b.scores)


def colour_forms(rgb: np.ndarray) -> dict[str, object]:
    """Forms of an RGB photo that must give the boxes of the uint8 RGB array."""
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], np.uint8)
    return {
        "float32 in [0, 1]": rgb.astype(np.float32) / 255,
        "float64 in [0, 1]": rgb / 255.0,
        "float16 in [0, 1]": (rgb / 255.0).astype(np.float16),
        "float32 on 0..255": rgb.astype(np.float32),
        "uint16 (16-bit)": rgb.astype(np.uint16) * 257,
        "int64 on 0..255": rgb.astype(np.int64),
        "RGBA, alpha dropped": np.dstack([rgb, alpha]),
        "a view of BGR reversed": np.ascontiguousarray(rgb[..., ::-1])[..., ::-1],
        "PIL RGB": Image.fromarray(rgb),
        "PIL RGBA": Image.fromarray(np.dstack([rgb, alpha])),
    }


def grey_forms(grey: np.ndarray) -> dict[str, object]:
    """Forms of a grey photo that must give the boxes of its grey repeated in R, G and B."""
    return {
        "(H, W) uint8": grey,
        "(H, W, 1) uint8": grey[..., None],
        "(H, W, 2) grey and alpha": np.dstack([grey, np.full_like(grey, 255)]),
        "(H, W) float in [0, 1]": grey / 255.0,
        "(H, W) uint16": grey.astype(np.uint16) * 257,
        "PIL L": Image.fromarray(grey),
        "PIL I;16": Image.fromarray(grey.astype(np.uint16) * 257),
    }


def test_every_colour_form_gives_the_boxes_of_the_uint8_copy(detector, rgb) -> None:
    expected = detector.detect([rgb])
    assert len(expected[0]) >= 1  # the cup: a float image in [0, 1] once gave no box
    for name, form in colour_forms(rgb).items():
        found = detector.detect([form])
        assert len(found[0]) == len(expected[0]), name
        assert_same(found, expected)


def test_every_grey_form_gives_the_boxes_of_the_grey_rgb_copy(detector, grey) -> None:
    expected = detector.detect([np.repeat(grey[..., None], 3, axis=2)])
    assert len(expected[0]) >= 1
    for name, form in grey_forms(grey).items():
        found = detector.detect([form])
        assert len(found[0]) == len(expected[0]), name
        assert_same(found, expected)


def test_one_image_and_an_array_of_images(detector, rgb, photos) -> None:
    other = load_image(photos["motorcycle_left"])
    expected = detector.detect([rgb, other])
    assert_same(detector.detect(rgb), expected[:1])  # one array: a list of one result
    assert_same(detector.detect(Image.fromarray(rgb)), expected[:1])
    assert_same(detector.detect(np.stack([rgb, rgb])), [expected[0]] * 2)  # (N, H, W, 3)
    assert_same(detector.detect((rgb, Image.fromarray(other))), expected)  # any sequence
    assert detector.detect([]) == []


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((0, 0, 3), np.uint8), "image 1: an empty image (0x0 pixels)"),
    (np.zeros((0, 10), np.uint8), "image 1: an empty image (10x0 pixels)"),
    (np.zeros((3, 40, 50), np.uint8), "image 1: an array of shape (3, 40, 50) is not an image: "
     "expected (H, W) grey or (H, W, C) with C 1, 2, 3 or 4 (grey, grey and alpha, RGB, RGBA) "
     "(channels first? image.transpose(1, 2, 0) puts them last)"),
    (np.zeros((40, 50, 5), np.uint8), "image 1: an array of shape (40, 50, 5) is not an image"),
    (np.zeros(40, np.uint8), "image 1: an array of shape (40,) is not an image"),
    (np.zeros((40, 50, 3), bool), "image 1: bool pixels are not an image's; give uint8 "
     "(0..255) or floats in [0, 1]"),
    (np.zeros((40, 50, 3), object), "image 1: object pixels are not an image's"),
    (np.full((40, 50, 3), np.nan, np.float32), "image 1: the image has NaN or infinite values"),
    (np.full((40, 50, 3), -0.5), "image 1: float64 values from -0.5 to -0.5: floats are read "
     "as intensities in [0, 1], or on 0..255 when any is above 1; give uint8 (0..255) or "
     "floats in [0, 1]"),
    (np.full((40, 50, 3), 300.0), "image 1: float64 values from 300 to 300"),
    (np.full((40, 50, 3), -1), "image 1: int64 values from -1 to -1: integers are read as "
     "0..255, or as 16-bit values"),
    (torch.zeros(40, 50, 3), "image 1: expected a numpy array (H, W, 3) or a PIL image, got "
     "Tensor"),
    ("photo.jpg", "image 1: expected a numpy array (H, W, 3) or a PIL image, got str"),
])
def test_what_cannot_be_read_as_meant_is_refused(detector, rgb, image, message) -> None:
    with pytest.raises(DataError) as refused:
        detector.detect([rgb, image])  # named by its place, never skipped in silence
    assert str(refused.value).startswith(message)


def test_an_empty_pil_image_is_refused() -> None:
    with pytest.raises(DataError, match=r"image: an empty image \(0x0 pixels\)"):
        rgb_pixels(Image.new("RGB", (0, 0)))


def test_uint8_rgb_is_passed_through_as_is(rgb) -> None:
    assert rgb_pixels(rgb) is rgb  # no copy of what is already the network's form
