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
from yolov3.images import JPEG_END, MISSING_GREY, decode_image, load_image, missing_share


def photo(hw: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A smooth picture with texture (a JPEG of it is not all high-frequency noise)."""
    y, x = np.mgrid[: hw[0], : hw[1]]
    noise = np.random.default_rng(0).integers(0, 40, (*hw, 3))
    base = np.stack([x * 255 // hw[1], y * 255 // hw[0], (x + y) % 256], axis=-1)
    return (base * 0.8 + noise).clip(0, 255).astype(np.uint8)


class Pipe(io.RawIOBase):
    """A file that can be read once, from the start, as a pipe is (no seek)."""

    def __init__(self, file: io.RawIOBase) -> None:
        self.file = file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: bytearray) -> int | None:
        return self.file.readinto(buffer)


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
    assert decoded.cut_short and decoded.progressive == progressive
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
    assert np.array_equal(sample.image, decode_image(images / "roo.jpg").pixels)
    np.testing.assert_array_equal(sample.boxes, [[10, 20, 60, 80]])


def test_the_missing_share_counts_the_grey_past_the_cut_not_grey_in_the_picture() -> None:
    pixels = photo((64, 80))
    pixels[:32] = MISSING_GREY  # a picture whose top half is that very grey
    assert missing_share(pixels) == 0
    cut = pixels.copy()
    cut[48:56, 40:] = MISSING_GREY  # the cut: the end of one band of blocks, all bands below
    cut[56:] = MISSING_GREY
    assert missing_share(cut) == pytest.approx((8 * 40 + 8 * 80) / (64 * 80))
    # and a real cut, as the decoder leaves it: about the share of the file lost
    whole = jpeg_bytes(photo((128, 128)))
    start = whole.index(b"\xff\xda")
    kept = start + (len(whole) - start) // 2
    decoded = decode_image(io.BytesIO(whole[:kept]))
    assert 0.35 < missing_share(decoded.pixels) < 0.65


def test_streams_a_pipe_and_an_mpo_cut_short(tmp_path: Path) -> None:
    whole = jpeg_bytes(photo())
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[:-40])
    expected = decode_image(path).pixels
    with path.open("rb", buffering=0) as f:
        assert np.array_equal(decode_image(io.BufferedReader(Pipe(f))).pixels, expected)
    with pytest.raises(DataError, match=r"^<stream>: not a readable image"):
        load_image(io.BytesIO(b"not an image"))
    # a camera's multi-picture JPEG (MPO), cut inside its first picture
    mpo = io.BytesIO()
    first, second = Image.fromarray(photo()), Image.fromarray(photo()[::-1].copy())
    first.save(mpo, "MPO", save_all=True, append_images=[second], quality=90)
    data = mpo.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    second_start = data.index(b"\xff\xd8", 2)  # the second picture's start-of-image marker
    mpo_path = tmp_path / "cut.mpo.jpg"
    mpo_path.write_bytes(data[: second_start // 2])
    decoded = decode_image(mpo_path)
    assert decoded.cut_short and decoded.pixels.shape == (96, 128, 3)
