"""The work of ``yolov3 detect``: detection over images (in batches) and videos (frame by
frame), and its outputs as they are found: annotated pictures and videos, JSON records and YOLO
label files (:class:`DetectRun`, :class:`DetectionFiles`)."""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from yolov3.errors import DataError, YoloError
from yolov3.fileio import atomic_write, refuse_overwriting_inputs
from yolov3.inference.batching import LetterboxedBatch, letterboxed_batches
from yolov3.inference.detector import Detections, Detector
from yolov3.inference.draw import draw_detections
from yolov3.inference.labels import LabelFolder
from yolov3.inference.records import detection_records
from yolov3.inference.select import keep_classes
from yolov3.inference.sources import ImageSource, ImageSources, Sources, VideoSource
from yolov3.inference.video import AnnotatedVideo, VideoFrames, frame_batches


def check_outputs(sources: Sources, out: Path, save_txt: bool, nosave: bool) -> None:
    """A :class:`YoloError` when writing to ``out`` would overwrite an input image or video: an
    image in ``out`` itself (its annotated copy), with ``save_txt`` one in ``out/images``
    (replaced), and, unless ``nosave``, any source that an annotated picture or video would be
    written over (the same file through a link too, as
    :func:`~yolov3.fileio.refuse_overwriting_inputs` finds it)."""
    out = out.resolve()
    for source in sources.images:
        if source.path is None:
            continue
        folder = source.path.parent.resolve()
        if folder == out:
            raise YoloError(f"--out {out} holds the input image {source.path}: the annotated "
                            "copies would overwrite the inputs; choose another --out")
        if save_txt and folder == out / "images":
            raise YoloError(f"--out {out} holds the input image {source.path} in images/, "
                            "which --save-txt replaces; choose another --out")
    if nosave:
        return
    image_stems, video_stems = sources.stems()
    for image, stem in zip(sources.images, image_stems, strict=True):
        refuse_overwriting_inputs([out / _picture_name(image, stem)], {"SOURCE": image.path})
    for video, stem in zip(sources.videos, video_stems, strict=True):
        if isinstance(video.target, str):  # a file, or a URL (never an existing path)
            refuse_overwriting_inputs([out / f"{stem}.mp4"], {"SOURCE": video.target})


def _picture_name(source: ImageSource, stem: str) -> str:
    """The annotated copy's file name: the stem with the image's own type where Pillow writes
    it as is, else PNG."""
    suffix = source.suffix.lower()
    return stem + (suffix if suffix in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png")


class DetectionFiles:
    """The detections of a run as they are found: each image's or frame's records are
    appended to ``DIR/detections.jsonl`` (one JSON record a line) and flushed at once, so that
    an interrupted or failed run keeps what was done; :meth:`finish` writes them all to
    ``DIR/detections.json``. Writing any output fails as one :class:`YoloError` naming the
    folder (a full disk, a file that cannot be written), never an ``OSError`` traceback."""

    def __init__(self, out: Path) -> None:
        self.out, self.records, self.images, self.frames = out, [], 0, 0
        self._lines = None
        with self.writing():
            self._lines = open(out / "detections.jsonl", "w", encoding="utf-8")  # noqa: SIM115

    def done(self) -> str:
        """What was done: ``3 images``, ``3 images and 40 video frames``."""
        frames = f"{self.frames} video frames"
        if not self.frames:
            return f"{self.images} images"
        return f"{self.images} images and {frames}" if self.images else frames

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an ``OSError`` while writing outputs into a :class:`YoloError`."""
        try:
            yield
        except OSError as exc:
            self.close()
            done = (f"; the {self.done()} done before are in {self.out}/detections.jsonl"
                    if self.images or self.frames else "")
            reason = exc.strerror or str(exc)
            hint = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "make it writable")
            raise YoloError(f"{self.out}: cannot write the detection results there ({reason}"
                            f"{': ' + str(exc.filename) if exc.filename else ''}); {hint} or "
                            f"choose another --out{done}") from None

    def save_picture(self, picture: Image.Image, path: Path) -> None:
        """Write an annotated picture; a part-written one (full disk, Ctrl-C) is removed."""
        with self.writing():
            try:
                picture.save(path)
            except BaseException:
                path.unlink(missing_ok=True)
                raise

    def add(self, records: list[dict], frame: bool = False) -> None:
        """The records of one more image (video ``frame``): on disk (flushed) before this
        returns."""
        with self.writing():
            self._lines.write("".join(json.dumps(r) + "\n" for r in records))
            self._lines.flush()
        self.records += records
        if frame:
            self.frames += 1
        else:
            self.images += 1

    def finish(self) -> Path:
        """Close the JSON Lines file and write every record to ``detections.json``."""
        path = self.out / "detections.json"
        with self.writing():
            self._lines.close()
            with atomic_write(path) as f:
                f.write(json.dumps(self.records, indent=1).encode())
        return path

    def close(self) -> None:
        """Close the JSON Lines file, keeping what reached the disk (an error closing it, such
        as a full disk refusing the last buffered bytes, leaves those out)."""
        if self._lines is not None:
            with suppress(OSError):
                self._lines.close()


class DetectRun:
    """One ``yolov3 detect``: the detector, the detections kept (``keep``: class indices, or
    None for all; at most ``max_det`` an image) and where they go (``results``, ``labels``
    when --save-txt, the annotated pictures and videos beside the results unless
    ``nosave``).
    ``failed`` counts the sources that could not be fetched or opened (a URL, a video, a
    webcam), ``skipped`` the files that are not readable images (each reported by name)."""

    def __init__(self, detector: Detector, names: list[str], keep: torch.Tensor | None,
                 max_det: int, results: DetectionFiles, labels: LabelFolder | None,
                 nosave: bool) -> None:
        self.detector, self.names, self.keep, self.max_det = detector, names, keep, max_det
        self.results, self.labels, self.nosave, self.out = results, labels, nosave, results.out
        self.failed = self.skipped = 0

    def detect(self, batch: LetterboxedBatch) -> list[Detections]:
        """The detections kept of a batch's images, in image pixels."""
        found = self.detector.detect_batch(batch.inputs, batch.letterboxes)
        if self.keep is None:
            return found
        return [keep_classes(d, self.keep, self.max_det) for d in found]

    def fail(self, message: str, bar: tqdm | None = None) -> None:
        """A source that could not be fetched or opened: one error line, and the run goes
        on."""
        self.failed += 1
        (bar.write if bar is not None else print)(f"yolov3 detect: error: {message}",
                                                   file=sys.stderr)

    def images(self, sources: list[ImageSource], stems: list[str], batch_size: int,
               workers: int) -> None:
        """Detect on the images, in batches decoded ahead by ``workers`` processes."""
        batches = letterboxed_batches(ImageSources(sources), self.detector.input_hw, batch_size,
                                      workers, keep_images=True)
        with tqdm(total=len(sources), unit="img", desc="detect") as bar:
            for batch in batches:
                for _, message in batch.failures:
                    self.skipped += 1
                    bar.write(f"skipped: {message}", file=sys.stderr)
                if batch.indices:
                    for i, image, dets in zip(batch.indices, batch.images, self.detect(batch),
                                              strict=True):
                        bar.write(self._image_done(sources[i], stems[i], image, dets))
                bar.update(len(batch.indices) + len(batch.failures))

    def _image_done(self, source: ImageSource, stem: str, image: np.ndarray,
                    dets: Detections) -> str:
        """Write an image's outputs; the line that says what was found and where it went."""
        written = []
        if not self.nosave:
            written.append(self.out / _picture_name(source, stem))
            self.results.save_picture(draw_detections(image, dets, self.names), written[-1])
        if self.labels is not None:
            with self.results.writing():
                written.append(self.labels.add_image(source, stem, dets, image.shape[:2]))
        records = detection_records(source.name, dets, self.names)
        self.results.add(records)
        found = ", ".join(f"{r['category_name']} {r['score']:.2f}" for r in records)
        return (f"{source.name}: {found or 'nothing found'}"
                + (f" -> {', '.join(map(str, written))}" if written else ""))

    def video(self, source: VideoSource, stem: str, stride: int, batch_size: int) -> None:
        """Detect on every ``stride``-th frame of a video, stream or webcam, ``batch_size``
        frames at a time, until it ends (or Ctrl-C)."""
        try:
            frames = VideoFrames(source, stride)
        except DataError as exc:
            self.fail(str(exc))
            return
        path, count, detections = self.out / f"{stem}.mp4", 0, 0
        with frames, tqdm(total=frames.total, unit="frame", desc=stem) as bar:
            writer = None if self.nosave else AnnotatedVideo(path, frames.fps / stride,
                                                             frames.size_hw)
            try:
                for batch in frame_batches(frames, self.detector.input_hw, batch_size):
                    for index, frame, dets in zip(batch.indices, batch.images,
                                                  self.detect(batch), strict=True):
                        if writer is not None:
                            writer.write(draw_detections(frame, dets, self.names))
                        if self.labels is not None:
                            with self.results.writing():
                                self.labels.add_frame(stem, index, dets, frame.shape[:2])
                        records = detection_records(source.name, dets, self.names, frame=index,
                                           time_s=round(frames.seconds(index), 3))
                        self.results.add(records, frame=True)
                        detections += len(records)
                    count += len(batch.indices)
                    bar.update(len(batch.indices))
            finally:
                if writer is not None:
                    writer.close()
                    if not count:
                        path.unlink(missing_ok=True)  # not a video
            if count:
                bar.write(f"{source.name}: {count} frames, {detections} detections"
                          + ("" if writer is None else f" -> {path} ({writer.codec_name})"))
        if not count:
            self.fail(f"{source.name}: no frame could be read")
