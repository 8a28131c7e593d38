"""JPEG files cut short (an interrupted copy or download, such as one of the kangaroo photos)
are read as darknet and OpenCV read them: as far as the file goes, the missing blocks grey;
other images that do not decode stay clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from yolov3.datasets.voc import VocDataset
from yolov3.errors import DataError
from yolov3.images import JPEG_END, decode_image, load_image


def photo(hw: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth picture with texture (a JPEG of it is not all high-frequency noise)."""
    y, x = np.mgrid[: hw[0], : hw[1]]
    noise = np.random.default_rng(0).integers(0, 40, (*hw, 3))
    base = np.stack([x * 255 // hw[1], y * 255 // hw[0], (x + y) % 256], axis=-1)
    return (base * 0.8 + noise).clip(0, 255).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90, **options)
    return out.getvalue()


@pytest.mark.parametrize("keep", [0.6, 0.95])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_short_reads_as_opencv_reads_it(tmp_path: Path, keep: float,
                                                   progressive: bool) -> None:
    whole = jpeg_bytes(photo(), progressive=progressive)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(OSError, match="truncated"):  # what Pillow alone makes of it
        Image.open(path).load()

    decoded = decode_image(path)
    assert decoded.cut_short
    opencv = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]  # libjpeg: warns, reads
    assert decoded.pixels.shape == opencv.shape == (96, 128, 3)
    assert np.abs(decoded.pixels.astype(int) - opencv).max() <= 1
    # the same file read through an open binary file (stdin, a URL's bytes) gives the same
    assert np.array_equal(load_image(io.BytesIO(path.read_bytes())), decoded.pixels)
    if not progressive:  # baseline: the rows the file still holds are the whole file's rows
        full = load_image(io.BytesIO(whole))
        assert np.array_equal(decoded.pixels[:16], full[:16])
        if keep == 0.6:  # and the last rows, past the file's end, are mid-grey
            assert (decoded.pixels[-8:] == 128).all()


def test_a_whole_jpeg_is_not_cut_short_and_other_faults_stay_errors(tmp_path: Path) -> None:
    whole = jpeg_bytes(photo())
    good = tmp_path / "good.jpg"
    good.write_bytes(whole)
    assert not decode_image(good).cut_short
    # a file cut inside its header has no picture to read
    header = tmp_path / "header.jpg"
    header.write_bytes(whole[:100])
    with pytest.raises(DataError, match=r"header\.jpg: not a readable image"):
        load_image(header)
    # damage in the middle of a file that still ends with the end marker is not a cut
    broken = bytearray(whole)
    start = whole.index(b"\xff\xda")  # start of scan
    broken[start + 2: start + 40] = b"\xff" * 38
    assert bytes(broken).endswith(JPEG_END)
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(broken))
    with pytest.raises(DataError, match=r"damaged\.jpg: not a readable image"):
        load_image(damaged)
    # a PNG cut short stays unreadable: its pixels are compressed as one stream
    png = tmp_path / "cut.png"
    Image.fromarray(photo()).save(png)
    png.write_bytes(png.read_bytes()[: png.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        load_image(png)


def test_training_reads_a_cut_short_photo_with_its_boxes(tmp_path: Path) -> None:
    images, annots = tmp_path / "images", tmp_path / "annots"
    images.mkdir()
    annots.mkdir()
    whole = jpeg_bytes(photo())
    (images / "roo.jpg").write_bytes(whole[: len(whole) - 30])
    (annots / "roo.xml").write_text(
        "<annotation><filename>roo.jpg</filename><size><width>128</width><height>96</height>"
        "<depth>3</depth></size><object><name>kangaroo</name><difficult>0</difficult><bndbox>"
        "<xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox></object>"
        "</annotation>")
    dataset = VocDataset(tmp_path, split="all", names=["kangaroo"])
    sample = dataset[0]
    assert sample.image.shape == (96, 128, 3)
    np.testing.assert_array_equal(sample.boxes, [[10, 20, 60, 80]])
