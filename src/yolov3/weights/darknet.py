"""Darknet ``.weights`` files: read into a model, write from a model, byte for byte.

Layout: int32 major, minor, revision; ``seen`` (images trained on) as int64 when
``major * 10 + minor >= 2``, else int32; then float32 values in layer order. A convolution with
batch norm stores BN beta, gamma, running mean, running variance, then the conv weight
(out, in, kh, kw); one without stores its bias, then the weight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from yolov3.errors import WeightsError
from yolov3.fileio import atomic_write
from yolov3.model.layers import ConvBlock
from yolov3.model.network import YOLOv3

log = logging.getLogger("yolov3")


@dataclass(frozen=True)
class LoadReport:
    """What a weights file covered: conv layers loaded of those in the model, floats read."""

    layers_loaded: int
    layers_total: int
    floats_read: int
    floats_expected: int

    @property
    def complete(self) -> bool:
        return self.layers_loaded == self.layers_total


def _tensors(block: ConvBlock) -> list[Tensor]:
    """The parameters of one [convolutional] layer in darknet's file order."""
    if block.bn is not None:
        bn = block.bn
        return [bn.bias, bn.weight, bn.running_mean, bn.running_var, block.conv.weight]
    assert block.conv.bias is not None
    return [block.conv.bias, block.conv.weight]


def _conv_blocks(model: YOLOv3) -> list[ConvBlock]:
    return [m for m in model.layers if isinstance(m, ConvBlock)]


def count_floats(model: YOLOv3) -> int:
    """How many floats a full weights file for ``model`` holds after its header."""
    return sum(t.numel() for b in _conv_blocks(model) for t in _tensors(b))


def _read_header(data: bytes, path: Path) -> tuple[tuple[int, int, int], int, int]:
    """(major, minor, revision), ``seen`` and the offset of the first float."""
    if len(data) < 16:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a darknet header; the "
                           "file is truncated or not a darknet .weights file")
    major, minor, revision = (int(v) for v in np.frombuffer(data, np.int32, 3))
    if major * 10 + minor >= 2:
        if len(data) < 20:
            raise WeightsError(f"{path}: too short for a darknet header with a 64-bit 'seen'; "
                               "the file is truncated or not a darknet .weights file")
        seen, offset = int(np.frombuffer(data, np.int64, 1, 12)[0]), 20
    else:
        seen, offset = int(np.frombuffer(data, np.int32, 1, 12)[0]), 16
    if not (0 <= major < 1000 and 0 <= minor < 1000):
        raise WeightsError(f"{path}: header version {major}.{minor} is not a darknet weights "
                           "file's (a yolov3 checkpoint or a darknet .weights file is expected)")
    return (major, minor, revision), seen, offset


def _float_count(path: Path, size: int, offset: int) -> int:
    """How many float32 values follow the header; they must be whole."""
    if (size - offset) % 4:
        raise WeightsError(
            f"{path}: {size - offset} bytes after the header is not a whole number of floats; "
            "the file is truncated or damaged (download or copy it again)"
        )
    return (size - offset) // 4


def count_file_floats(path: str | Path) -> int:
    """How many floats a darknet weights file holds after its header (reading the header only)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(20)
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights file ({exc.strerror})") from None
    return _float_count(path, size, _read_header(head, path)[2])


def load_darknet_weights(model: YOLOv3, path: str | Path) -> LoadReport:
    """Load a darknet weights file into ``model``, in place.

    A file with fewer floats than the model (``darknet53.conv.74``) loads the layers it covers
    completely and reports how many. A file with more floats, or one that ends inside a layer, is
    a :class:`WeightsError` stating the expected and actual float counts.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights file ({exc.strerror})") from None
    version, seen, offset = _read_header(data, path)
    floats = np.frombuffer(data, np.float32, _float_count(path, len(data), offset), offset)
    expected = count_floats(model)
    if floats.size == 0:
        raise WeightsError(f"{path}: holds a header and no weights; the file is truncated")
    if floats.size > expected:
        raise WeightsError(
            f"{path}: holds {floats.size:,} floats but the model expects {expected:,}; "
            "the weights were made for a different cfg (architecture or number of classes)"
        )
    blocks = _conv_blocks(model)
    ends = np.cumsum([sum(t.numel() for t in _tensors(b)) for b in blocks])
    loaded = int(np.searchsorted(ends, floats.size, side="right"))
    pos = int(ends[loaded - 1]) if loaded else 0
    if pos != floats.size:
        raise WeightsError(
            f"{path}: holds {floats.size:,} floats, which ends inside conv layer {loaded + 1} "
            f"of {len(blocks)} (expected {expected:,} for the whole model, or a layer boundary); "
            "the file is truncated or was made for a different cfg"
        )
    start = 0
    with torch.no_grad():
        for block in blocks[:loaded]:
            for t in _tensors(block):
                n = t.numel()
                t.copy_(torch.from_numpy(floats[start : start + n].copy()).view_as(t))
                start += n
    model.header_version, model.seen = version, seen
    report = LoadReport(loaded, len(blocks), pos, expected)
    if not report.complete:
        log.info(
            "%s: loaded %d of %d conv layers (%s of %s floats); the rest keep their init",
            path.name, loaded, len(blocks), f"{pos:,}", f"{expected:,}",
        )
    return report


def save_darknet_weights(model: YOLOv3, path: str | Path, seen: int | None = None) -> None:
    """Write ``model`` as a darknet weights file, atomically (temp file, then rename).

    The header is the one the model was loaded with (version 0.2.0 for a new model), so a file
    loaded and saved back is byte-identical. ``seen`` overrides the images-seen counter.
    """
    path = Path(path)
    major, minor, revision = model.header_version
    seen = model.seen if seen is None else seen
    header = np.array([major, minor, revision], np.int32).tobytes()
    header += np.array([seen], np.int64 if major * 10 + minor >= 2 else np.int32).tobytes()
    parts = [
        t.detach().to("cpu", torch.float32).contiguous().numpy().ravel()
        for b in _conv_blocks(model) for t in _tensors(b)
    ]
    with atomic_write(path) as f:
        f.write(header)
        for p in parts:
            f.write(p.astype("<f4", copy=False).tobytes())
