"""Images: which files are images, reading them as RGB pixels, their size without decoding, and
darknet's letterbox (the network input and the way back to image pixels).

The low-level module that the datasets, the training inputs and inference all read images with."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from yolov3.errors import DataError

# What Pillow raises for a file that is not a readable image (a header that claims more than
# twice Image.MAX_IMAGE_PIXELS is a DecompressionBombError, not an OSError).
PIL_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError,
              SyntaxError)


def eight_bits(values: np.ndarray, sixteen_bit: bool = False) -> np.ndarray:
    """Pixel values of any number type as 8 bits (uint8), as darknet's image loader keeps
    them: integers above 255 (all of them with ``sixteen_bit``, a 16-bit image) their top byte
    of 16 bits; floats intensities in [0, 1], or on 0..255 when any value is above 1, rounded;
    NaN as 0 and the rest clipped to 0..255."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind == "f":
        values = np.nan_to_num(values.astype(np.float64, copy=False))
        if values.size and values.max() <= 1:
            values = values * 255
        return np.rint(values).clip(0, 255).astype(np.uint8)
    values = values.astype(np.int64).clip(0, 65535)
    if sixteen_bit or values.max(initial=0) > 255:
        values >>= 8
    return values.astype(np.uint8)


def _eight_bit_grey(im: Image.Image) -> Image.Image:
    """A 16-bit grey image (modes ``I;16*``, and ``I`` with values above 255) or a float one
    (``F``) as 8 bits, by :func:`eight_bits`. (Pillow's own conversion clips every value above
    255 to white.)"""
    return Image.fromarray(eight_bits(np.asarray(im), sixteen_bit=im.mode.startswith("I;16")))


# The marker that ends a JPEG file. A file cut short (an interrupted copy or download) lacks it
# and the entropy-coded data before it; darknet's reader (stb_image) and OpenCV's (libjpeg)
# decode such a file as far as it goes, the blocks past the cut mid-grey (MISSING_GREY in every
# channel) in a baseline JPEG; a progressive one loses its later scans (finer detail) first.
JPEG_END = b"\xff\xd9"
MISSING_GREY = 128


@dataclass(frozen=True)
class DecodedImage:
    """An image file's pixels, (H, W, 3) uint8 RGB; ``cut_short``: the file was a JPEG cut
    short, read as far as it goes (``progressive``: a progressive JPEG)."""

    pixels: np.ndarray
    cut_short: bool = False
    progressive: bool = False


def missing_share(pixels: np.ndarray) -> float:
    """The share of a cut-short baseline JPEG's pixels that lie past its cut: the mid-grey run
    at the end of each row, over the last rows that all end in one (the blocks of a JPEG are
    stored row by row, so the cut leaves the end of a band and every band below it grey)."""
    if pixels.size == 0:
        return 0.0
    height, width = pixels.shape[:2]
    picture = (pixels != MISSING_GREY).any(axis=2)[:, ::-1]
    run = np.where(picture.any(axis=1), picture.argmax(axis=1), width)  # grey at each row's end
    whole = np.flatnonzero(run == 0)  # rows that end in picture: the missing part is below
    below = int(whole[-1]) + 1 if whole.size else 0
    return float(run[below:].sum()) / (height * width)


def _name(source: str | Path | BinaryIO) -> str:
    """How an error names an image file: its path, or the name of an open file."""
    return str(source) if isinstance(source, str | Path) else str(getattr(source, "name",
                                                                          "<stream>"))


def _ended_jpeg(source: str | Path | BinaryIO) -> Image.Image | None:
    """A JPEG file cut short, decoded with its end marker put back; None when the file has its
    end marker, so that its fault is elsewhere, or when it does not decode even so."""
    if isinstance(source, str | Path):
        data = Path(source).read_bytes()
    else:
        source.seek(0)
        data = source.read()
    if data.rstrip(b"\0").endswith(JPEG_END):
        return None
    try:
        im = Image.open(io.BytesIO(data + JPEG_END))
        im.load()
    except PIL_ERRORS:
        return None
    return im


def _as_rgb(im: Image.Image, exif_transpose: bool) -> np.ndarray:
    """A loaded image as RGB pixels, the EXIF orientation applied with ``exif_transpose``."""
    if exif_transpose:
        im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":
        im = _eight_bit_grey(im)
    return np.array(im.convert("RGB"))


def decode_image(source: str | Path | BinaryIO, exif_transpose: bool = True) -> DecodedImage:
    """Read an image file (a path, or an open binary file) in full.

    With ``exif_transpose`` the EXIF orientation is applied, so the pixels are those a person sees.
    16-bit and float grey images are brought to 8 bits first (see :func:`_eight_bit_grey`). A JPEG
    cut short is read as far as it goes, as darknet and OpenCV read it (``cut_short``); any other
    file that does not decode is a :class:`DataError` naming it.
    """
    if not isinstance(source, str | Path) and not source.seekable():  # a pipe: read it once
        source = io.BytesIO(source.read())
    try:
        with Image.open(source) as im:
            try:
                im.load()
            except PIL_ERRORS:
                ended = _ended_jpeg(source) if im.format in ("JPEG", "MPO") else None
                if ended is None:
                    raise
                with ended:
                    return DecodedImage(_as_rgb(ended, exif_transpose), cut_short=True,
                                        progressive=bool(ended.info.get("progressive")))
            return DecodedImage(_as_rgb(im, exif_transpose))
    except PIL_ERRORS as exc:
        raise DataError(f"{_name(source)}: not a readable image ({exc})") from None


def load_image(source: str | Path | BinaryIO, exif_transpose: bool = True) -> np.ndarray:
    """An image file's pixels as an (H, W, 3) uint8 RGB array (see :func:`decode_image`)."""
    return decode_image(source, exif_transpose).pixels


# Array shapes that are an image, by channel count: what a channel-last array holds.
_CHANNELS = {1: "grey", 2: "grey and alpha", 3: "RGB", 4: "RGBA"}


def rgb_pixels(image: np.ndarray | Image.Image, what: str = "image") -> np.ndarray:
    """An image given in memory as the network reads images: (H, W, 3) uint8 RGB.

    A PIL image is read as its file would be (:func:`decode_image`: EXIF orientation applied,
    16-bit and float grey to 8 bits). An array may be (H, W) or (H, W, 1) grey, (H, W, 2) grey
    and alpha, (H, W, 3) RGB or (H, W, 4) RGBA, channels last; grey is repeated into the three
    channels and alpha dropped (the colours kept as they are, as ``Image.convert("RGB")``
    does). Its values are read by :func:`eight_bits`, as an image file of that number type is:
    uint8 as is; uint16 a 16-bit image, its top byte; other integers 0..255 as is, or 16-bit
    values when any is above 255; floats intensities in [0, 1], or on 0..255 when any value is
    above 1, rounded to 8 bits (the precision of the images the network was trained on).

    Anything else is a :class:`DataError` naming ``what`` and saying what to give: an empty
    image, another shape (channels first, a batch), bool, complex or object values, negative
    values, integers above 65535, floats above 255, NaN or infinite values.
    """
    if isinstance(image, Image.Image):
        try:
            image = _as_rgb(image, exif_transpose=True)
        except PIL_ERRORS as exc:
            raise DataError(f"{what}: Pillow cannot convert this {image.mode} image to RGB "
                            f"({exc})") from None
    if not isinstance(image, np.ndarray):
        raise DataError(f"{what}: expected a numpy array (H, W, 3) or a PIL image, got "
                        f"{type(image).__name__}")
    shape = image.shape
    channels = shape[2] if image.ndim == 3 else 1
    if image.ndim not in (2, 3) or channels not in _CHANNELS:
        hint = (" (channels first? image.transpose(1, 2, 0) puts them last)"
                if image.ndim == 3 and shape[0] in _CHANNELS else "")
        raise DataError(f"{what}: an array of shape {shape} is not an image: expected (H, W) "
                        f"grey or (H, W, C) with C 1, 2, 3 or 4 ({', '.join(_CHANNELS.values())})"
                        + hint)
    if not (shape[0] and shape[1]):
        raise DataError(f"{what}: an empty image ({shape[1]}x{shape[0]} pixels)")
    _check_values(image, what)
    if channels >= 3:
        colour = image if channels == 3 else image[..., :3]
    else:
        colour = image if image.ndim == 2 else image[..., 0]
    pixels = eight_bits(colour, sixteen_bit=image.dtype == np.uint16)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels)


def _check_values(image: np.ndarray, what: str) -> None:
    """A :class:`DataError` for pixel values that :func:`rgb_pixels` cannot read as meant."""
    kind = image.dtype.kind
    if kind not in "uif":
        raise DataError(f"{what}: {image.dtype} pixels are not an image's; give uint8 (0..255) "
                        "or floats in [0, 1]")
    if image.dtype == np.uint8:
        return
    if kind == "f" and not np.isfinite(image).all():
        raise DataError(f"{what}: the image has NaN or infinite values")
    low, high = image.min(), image.max()
    limit = 255 if kind == "f" else 65535
    if low < 0 or high > limit:
        meant = ("floats are read as intensities in [0, 1], or on 0..255 when any is above 1"
                 if kind == "f" else "integers are read as 0..255, or as 16-bit values")
        raise DataError(f"{what}: {image.dtype} values from {low:g} to {high:g}: {meant}; "
                        "give uint8 (0..255) or floats in [0, 1]")


# EXIF orientations that turn the stored picture by 90 degrees (what ``exif_transpose`` undoes).
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


@cache
def image_extensions() -> frozenset[str]:
    """Every file extension Pillow can open (lower case, with the dot)."""
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image extension (any case: ``.JPG`` counts)."""
    return path.suffix.lower() in image_extensions()


def list_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursively, into linked folders too), sorted by path.

    Each folder is walked once: folders reached without a link first, then the linked ones in
    path order, so that a folder reached both ways is listed at its own path. A link to a folder
    already walked (an ancestor, a cycle, a second link to one folder) is not entered again.
    Folders that cannot be read are skipped."""
    found: list[Path] = []
    walked: set[Path] = set()
    plain, linked = [folder], []  # plain: a stack, the smallest path on top
    while plain or linked:
        if not plain:
            linked.sort(reverse=True)
            plain.append(linked.pop())
        current = plain.pop()
        try:
            real = current.resolve()
            if real in walked:
                continue
            walked.add(real)
            entries = sorted(current.iterdir(), reverse=True)
        except (OSError, RuntimeError):  # unreadable, or a link loop (RuntimeError before 3.13)
            continue
        for entry in entries:
            if is_image_file(entry) and entry.is_file():
                found.append(entry)
            elif entry.is_dir():
                (linked if entry.is_symlink() else plain).append(entry)
    return sorted(found)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the image as :func:`yolov3.inference.load_image` returns it (EXIF
    orientation applied), read from the file header without decoding the pixels."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if im.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED_ORIENTATIONS:
                width, height = height, width
    except PIL_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return height, width




class ImageFiles(Sequence[np.ndarray]):
    """Image files read on access: ``files[i]`` is :func:`load_image` of the ``i``-th path (a
    :class:`DataError` for a file that is not a readable image)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed in the network input: ``input_x = image_x * scale_x + pad_x``
    and ``input_y = image_y * scale_y + pad_y``. The two scales differ only by the rounding of
    the resized side to whole pixels, which matters for very elongated images."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    image_hw: tuple[int, int]

    def to_image(self, boxes_xyxy: Tensor) -> Tensor:
        """Map (n, 4) x1, y1, x2, y2 boxes from network-input pixels to image pixels, clipped
        (darknet's ``correct_yolo_boxes``)."""
        h, w = self.image_hw
        pad = boxes_xyxy.new_tensor([self.pad_x, self.pad_y, self.pad_x, self.pad_y])
        scale = boxes_xyxy.new_tensor([self.scale_x, self.scale_y, self.scale_x, self.scale_y])
        out = (boxes_xyxy - pad) / scale
        limit = boxes_xyxy.new_tensor([w, h, w, h])
        return torch.minimum(out.clamp(min=0), limit)


def letterbox_geometry(
    image_hw: tuple[int, int], input_hw: tuple[int, int]
) -> tuple[int, int, Letterbox]:
    """Darknet's letterbox size: the image scaled to fit ``input_hw`` with its aspect kept,
    centred. Returns the resized (height, width) and the :class:`Letterbox` mapping."""
    (h, w), (in_h, in_w) = image_hw, input_hw
    if in_w / w < in_h / h:
        new_w, new_h = in_w, int(h * in_w / w)
    else:
        new_h, new_w = in_h, int(w * in_h / h)
    new_h, new_w = max(new_h, 1), max(new_w, 1)
    pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
    return new_h, new_w, Letterbox(new_w / w, new_h / h, float(pad_x), float(pad_y), (h, w))


def letterbox(image: np.ndarray | Tensor, input_hw: tuple[int, int]) -> tuple[Tensor, Letterbox]:
    """Darknet's ``letterbox_image``: the image resized keeping its aspect ratio, centred on a
    grey (0.5) canvas.

    The resize is bilinear with half-pixel centres (output pixel centre X samples the image at
    ``(X + 0.5) * w / new_w - 0.5``, as OpenCV's ``INTER_LINEAR`` and DeNA's ``cv2.resize``), so
    that a point at image x lands at ``x * new_w / w + pad``: exactly the mapping of
    :class:`Letterbox`, of the training targets and of darknet's ``correct_yolo_boxes``, and the
    same placement as the training transform. (Darknet's own ``resize_image`` aligns the
    corner pixels instead, which puts the image up to 0.5 input pixels, times the
    enlargement, away from where its boxes are mapped: ``tests/test_geometry.py`` measures it.)

    ``image`` is (H, W, 3) uint8 RGB (numpy) or a (3, H, W) float tensor in [0, 1]. Returns the
    (3, in_h, in_w) float tensor in [0, 1] and the mapping back to image pixels.
    """
    if isinstance(image, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    else:
        x = image
    h, w = x.shape[1:]
    new_h, new_w, info = letterbox_geometry((h, w), input_hw)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
    canvas = x.new_full((3, *input_hw), 0.5)
    top, left = int(info.pad_y), int(info.pad_x)
    canvas[:, top : top + new_h, left : left + new_w] = x
    return canvas, info
