"""Videos, streams and webcams frame by frame, with OpenCV: every Nth frame read as RGB and
letterboxed in batches for the network, and the annotated frames written as a video.

Annotated videos are ``.mp4`` files, whatever the input's container, in H.264 (``avc1``), which
browsers play, where an encoder for it is at hand: OpenCV's own where its build has one (the
opencv-python wheels do not), else PyAV's (its wheels have libx264: ``pip install av``); else
in MPEG-4 Part 2 (``mp4v``), which the FFmpeg inside every OpenCV build writes but browsers do
not play (:data:`VIDEO_CODECS`)."""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from itertools import islice
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from yolov3.errors import DataError, YoloError
from yolov3.images import letterbox
from yolov3.inference.batching import LetterboxedBatch, collate_letterboxed
from yolov3.inference.sources import VideoSource

# The frame rate written for a stream that does not say its own.
UNKNOWN_FPS = 30.0
#: The codecs an annotated video is written in, by fourcc, the first that can be written.
VIDEO_CODECS: dict[str, str] = {"avc1": "H.264", "mp4v": "MPEG-4 Part 2"}


class VideoFrames:
    """The frames of a video file, stream or webcam, every ``stride``-th from the first:
    iterating gives ``(frame index, (H, W, 3) uint8 RGB frame)``, the index counting every
    frame of the source from 0. ``fps`` is the source's frame rate (0 when it does not say),
    ``size_hw`` its frame size, ``total`` how many frames iterating gives when the source says
    its length (a file), else None (a stream, a webcam). A source that OpenCV cannot open is a
    :class:`DataError` naming it."""

    def __init__(self, source: VideoSource, stride: int = 1) -> None:
        self.source, self.stride = source, stride
        self.capture = cv2.VideoCapture(source.target)
        if not self.capture.isOpened():
            raise DataError(f"{source.name}: cannot open it as a video (OpenCV reads video files "
                            "such as mp4, avi, mov, mkv, webm, rtsp/rtmp/http streams and "
                            "webcams by index)")
        self.opened, self._read_at = time.monotonic(), {}
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and fps > 0 else 0.0
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.total = -(-count // stride) if count > 0 else None
        self.size_hw = (int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                        int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)))

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        index = -1
        while self.capture.grab():  # skipped frames are not converted
            index += 1
            if index % self.stride:
                continue
            ok, frame = self.capture.retrieve()
            if not ok:
                return
            if not self.fps:
                self._read_at[index] = time.monotonic() - self.opened
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def seconds(self, index: int) -> float:
        """The time of frame ``index`` (one iteration gave) in the video, from its frame rate;
        for a source without one, the seconds from its opening to the frame's reading."""
        return index / self.fps if self.fps else self._read_at.pop(index)

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def frame_batches(
    frames: Iterable[tuple[int, np.ndarray]], input_hw: tuple[int, int], batch_size: int
) -> Iterator[LetterboxedBatch]:
    """Batches of ``batch_size`` letterboxed frames (the last may be smaller): ``indices`` are
    the frame indices, ``images`` the frames."""
    frames = iter(frames)
    while chunk := list(islice(frames, batch_size)):
        yield collate_letterboxed([(i, *letterbox(frame, input_hw), frame)
                                   for i, frame in chunk])


class _Encoder(Protocol):
    def write(self, rgb: np.ndarray) -> None: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """The process's stderr (file descriptor 2) sent to the null device: the FFmpeg inside
    OpenCV prints there, not through Python, why an encoder it tried cannot open."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _OpenCVEncoder:
    """A video written by OpenCV's ``VideoWriter`` in the codec ``fourcc``; ``opened`` says
    whether this OpenCV build could start it."""

    def __init__(self, path: Path, fourcc: str, fps: float, width: int, height: int) -> None:
        with _native_stderr_muted():
            self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps,
                                          (width, height))
        self.opened = self.writer.isOpened()

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()


class _PyAVEncoder:
    """An H.264 video written by PyAV's libx264: 4:2:0 colour, as browsers play it, with the
    index at the front of the file (``faststart``) so that it plays as it downloads; an odd
    width or height is padded by a black column or row (4:2:0 needs even sides)."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        import av

        self.av = av
        self.container = av.open(str(path), "w", options={"movflags": "faststart"})
        try:
            self.stream = self.container.add_stream(
                "libx264", rate=Fraction(fps).limit_denominator(1001))
            self.stream.width, self.stream.height = width + width % 2, height + height % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.open()
        except BaseException:
            self.container.close()
            raise

    def write(self, rgb: np.ndarray) -> None:
        pad = ((0, self.stream.height - rgb.shape[0]), (0, self.stream.width - rgb.shape[1]),
               (0, 0))
        frame = self.av.VideoFrame.from_ndarray(np.pad(rgb, pad), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))  # the frames the encoder still holds
        self.container.close()


def _open_encoder(path: Path, fourcc: str, fps: float, width: int,
                  height: int) -> _Encoder | None:
    """An encoder of ``fourcc`` for the video ``path``: OpenCV's, else (H.264) PyAV's where
    it is installed; None when neither can write it."""
    opencv = _OpenCVEncoder(path, fourcc, fps, width, height)
    if opencv.opened:
        return opencv
    opencv.close()
    if fourcc != "avc1" or importlib.util.find_spec("av") is None:
        return None
    from av.error import FFmpegError

    try:
        return _PyAVEncoder(path, fps, width, height)
    except (ValueError, FFmpegError):  # no libx264 in this PyAV (ValueError: unknown codec)
        path.unlink(missing_ok=True)
        return None


class AnnotatedVideo:
    """A video of annotated frames at ``fps`` frames a second (0: unknown, :data:`UNKNOWN_FPS`
    is written), ``size_hw`` pixels, in the first of ``codecs`` (fourccs of
    :data:`VIDEO_CODECS`) that OpenCV or PyAV can write here: ``codec`` says which. A file
    that none can write is a :class:`YoloError` naming it."""

    def __init__(self, path: Path, fps: float, size_hw: tuple[int, int],
                 codecs: Iterable[str] = VIDEO_CODECS) -> None:
        self.path = path
        height, width = size_hw
        codecs = tuple(codecs)
        for fourcc in codecs:
            encoder = _open_encoder(path, fourcc, fps or UNKNOWN_FPS, width, height)
            if encoder is not None:
                self.encoder, self.codec = encoder, fourcc
                return
        raise YoloError(f"{path}: cannot write a {width}x{height} video there (in "
                        f"{' or '.join(codecs) or 'no codec'})")

    @property
    def codec_name(self) -> str:
        """``H.264 (avc1)``: the codec written, for messages."""
        return f"{VIDEO_CODECS[self.codec]} ({self.codec})"

    def write(self, picture: Image.Image) -> None:
        """Append an RGB frame of the video's size."""
        self.encoder.write(np.asarray(picture))

    def close(self) -> None:
        """Finish the file (what was written before a Ctrl-C stays playable)."""
        self.encoder.close()
