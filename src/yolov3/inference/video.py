"""Videos, streams and webcams frame by frame, with OpenCV: every Nth frame read as RGB and
letterboxed in batches for the network, and the annotated frames written as a video.

Annotated videos are MPEG-4 Part 2 (fourcc ``mp4v``) in an ``.mp4`` file, whatever the input's
container: the encoder that the FFmpeg inside the opencv-python wheels always has (H.264,
``avc1``, is not in them)."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from yolov3.errors import DataError, YoloError
from yolov3.images import letterbox
from yolov3.inference.batching import LetterboxedBatch, collate_letterboxed
from yolov3.inference.sources import VideoSource

# The frame rate written for a stream that does not say its own.
UNKNOWN_FPS = 30.0


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


class AnnotatedVideo:
    """An MPEG-4 video (``mp4v``) of annotated frames at ``fps`` frames a second (0: unknown,
    :data:`UNKNOWN_FPS` is written), ``size_hw`` pixels. A file OpenCV cannot open for writing
    is a :class:`YoloError` naming it."""

    def __init__(self, path: Path, fps: float, size_hw: tuple[int, int]) -> None:
        self.path = path
        height, width = size_hw
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"),
                                      fps or UNKNOWN_FPS, (width, height))
        if not self.writer.isOpened():
            raise YoloError(f"{path}: OpenCV cannot write a {width}x{height} video there")

    def write(self, picture: Image.Image) -> None:
        """Append an RGB frame of the video's size."""
        self.writer.write(cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish the file (what was written before a Ctrl-C stays playable)."""
        self.writer.release()
