"""``yolov3 detect``: boxes on images, folders, videos, streams and URLs, as annotated pictures
and videos, JSON records and (``--save-txt``) YOLO label files."""

from __future__ import annotations

import argparse
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

from yolov3.backends import make_detector
from yolov3.checks import check_img_size
from yolov3.cli.common import (
    add_detection_args,
    add_model_args,
    at_least,
    detect_options,
    device_from_args,
    model_from_args,
)
from yolov3.errors import DataError, YoloError
from yolov3.fileio import atomic_write, refuse_overwriting_inputs, writable_dir
from yolov3.inference.batching import LetterboxedBatch, letterboxed_batches
from yolov3.inference.detector import Detections, Detector
from yolov3.inference.draw import draw_detections
from yolov3.inference.labels import LabelFolder, earlier_labels
from yolov3.inference.options import BACKENDS, DetectOptions
from yolov3.inference.select import class_ids, keep_classes
from yolov3.inference.sources import (
    ImageSource,
    ImageSources,
    Sources,
    VideoSource,
    gather_sources,
)
from yolov3.inference.video import AnnotatedVideo, VideoFrames, frame_batches

_SOURCES = (
    "Sources, mixed freely: image files; folders (the images under them, recursively); glob "
    "patterns, quoted so that yolov3 expands them ('data/*.jpg', 'data/**/*.png': the image and "
    "video files they match); video files (mp4, avi, mov, mkv, webm, ...); a webcam index (0); "
    "stream URLs (rtsp://, rtsps://, rtmp://, srt://, udp://, tcp://); and http(s):// URLs. An "
    "http(s) URL whose path ends in a video extension (or .m3u8, .mpd) is a video read as it "
    "comes; one ending in an image extension is an image, downloaded; any other is what the "
    "server's Content-Type says: image/* an image, video/*, multipart/x-mixed-replace (MJPEG) "
    "or an HLS/DASH playlist a stream, anything else an error. A URL that cannot be fetched "
    "(--timeout) is an error line and the other sources still run; the exit status is then 1. "
    "The images are done first (in batches), then the videos one after the other."
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect objects in images, folders, videos, streams and URLs",
        description="Detect objects. " + _SOURCES + " Writes an annotated copy of each image "
        "and an annotated DIR/NAME.mp4 of each video (MPEG-4, mp4v; the frames processed, at "
        "the source's frame rate divided by --vid-stride), DIR/detections.jsonl as the "
        "detections are found (one JSON record a line; a video frame's also say its 0-based "
        "'frame' and 'time_s') and DIR/detections.json at the end, also of a run stopped with "
        "Ctrl-C.",
    )
    p.add_argument("paths", nargs="+", metavar="SOURCE",
                   help="image files, folders, glob patterns, video files, webcam indices, "
                   "stream and image URLs (see above)")
    add_model_args(p)
    add_detection_args(p, DetectOptions(), precision="auto")
    p.add_argument("--single-label", action="store_true",
                   help="keep only the best class of each box (default: every class above "
                   "--conf, as darknet does)")
    p.add_argument("--names", default=None, metavar="FILE",
                   help="the model's class names, one per line (default: a checkpoint's own, "
                   "else COCO's 80 names for 80 classes)")
    p.add_argument("--classes", default=None, metavar="NAME|ID,...",
                   help="keep only these classes: names or 0-based indices of the model's "
                   "classes, separated by commas (person,car or 0,2) (default: all)")
    p.add_argument("--max-det", type=at_least(1), default=DetectOptions().max_det,
                   help="at most this many detections an image or frame, the best "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=1,
                   help="images or video frames per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=at_least(0), default=0,
                   help="processes that decode and letterbox images ahead of the model; "
                   "video frames are read in this process (default: %(default)s)")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads of the engine, torch or onnxruntime (default: PyTorch's, "
                   "which follows OMP_NUM_THREADS, else one per core)")
    p.add_argument("--backend", choices=BACKENDS, default=DetectOptions().backend,
                   help="engine: torch (batch norm folded into the convolutions) or "
                   "onnxruntime (CPU; the model is exported to ONNX first) (default: %(default)s)")
    p.add_argument("--vid-stride", type=at_least(1), default=1, metavar="N",
                   help="detect on every Nth frame of a video or stream, from the first "
                   "(default: %(default)s)")
    p.add_argument("--save-txt", action="store_true",
                   help="also write YOLO label files (class xc yc w h, fractions of the image): "
                   "DIR/labels/STEM.txt per image with DIR/images/ (links to the images) and "
                   "DIR/data.yaml, so that --data DIR opens the results as a dataset (yolov3 "
                   "val, train); DIR/labels/VIDEO_FRAME.txt per processed video frame (no image "
                   "goes with those)")
    p.add_argument("--save-conf", action="store_true",
                   help="with --save-txt: end each label line with the score (the dataset "
                   "reader takes five fields, so no data.yaml is written then)")
    p.add_argument("--nosave", action="store_true",
                   help="write no annotated pictures or videos (the records and labels still)")
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS",
                   help="how long to wait for a URL's server (default: %(default)s)")
    p.add_argument("--out", default="runs/detect", metavar="DIR",
                   help="output folder for the pictures, videos, labels and detections.json "
                   "(default: %(default)s)")
    p.set_defaults(run=run)


def _seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


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
        records = _records(source.name, dets, self.names)
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
                        records = _records(source.name, dets, self.names, frame=index,
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
                          + ("" if writer is None else f" -> {path}"))
        if not count:
            self.fail(f"{source.name}: no frame could be read")


def run(args: argparse.Namespace) -> int:
    check_img_size(args.img_size)
    if args.save_conf and not args.save_txt:
        raise YoloError("--save-conf adds the score to the label files of --save-txt: give "
                        "--save-txt too")
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # ONNX Runtime's sessions take the same count
    sources = gather_sources(args.paths, Path(args.out), args.timeout)
    check_outputs(sources, Path(args.out), args.save_txt, args.nosave)
    if args.save_txt:
        earlier_labels(Path(args.out))  # before the model loads: an --out of someone else's
    if not sources.images and not sources.videos:
        raise DataError("; ".join(sources.failures) or
                        f"no images found in {', '.join(args.paths)} (looked for the file types "
                        "Pillow reads: jpg, png, bmp, webp, tif, ...)")
    if sources.earlier:
        print(f"left out {sources.earlier} files under --out {args.out} (earlier results)")
    device = device_from_args(args)
    model, names = model_from_args(args)
    keep = None if args.classes is None else class_ids(args.classes, names)
    # with --classes every detection reaches the class filter, which keeps the best --max-det
    max_det = args.max_det if keep is None else sys.maxsize
    options = detect_options(args, model, multi_label=not args.single_label, max_det=max_det,
                             backend=args.backend)
    detector = make_detector(model, options, device)
    out = writable_dir(args.out)
    results = DetectionFiles(out)
    with results.writing():
        labels = LabelFolder(out, names, args.save_conf) if args.save_txt else None
    image_stems, video_stems = sources.stems()
    job = DetectRun(detector, names, keep, args.max_det, results, labels, args.nosave)
    for message in sources.failures:
        job.fail(message)
    try:
        if sources.images:
            job.images(sources.images, image_stems, args.batch_size, args.workers)
        for source, stem in zip(sources.videos, video_stems, strict=True):
            job.video(source, stem, args.vid_stride, args.batch_size)
        written = results.finish()
    except KeyboardInterrupt:
        written = results.finish()
        done = [f"{results.images} of {len(sources.images)} images"] if sources.images else []
        done += [f"{results.frames} video frames"] if sources.videos else []
        print(f"yolov3 detect: interrupted after {' and '.join(done)}; their "
              f"{len(results.records)} detections are in {out}/detections.jsonl and "
              f"{written.name}", file=sys.stderr)
        return 130
    finally:
        results.close()
    height, width = detector.input_hw
    print(f"{results.done()} (input {width}x{height}), {len(results.records)} detections "
          f"written to {written} and detections.jsonl"
          + (f"; {job.skipped} unreadable images skipped" if job.skipped else "")
          + (f"; {job.failed} of the {len(sources)} sources failed (above)" if job.failed
             else ""))
    return 1 if job.failed or not (results.images or results.frames) else 0


def _records(name: str, dets: Detections, names: list[str], **where: float) -> list[dict]:
    """The records of an image's (a frame's) detections, as detections.json holds them:
    COCO-style ``bbox`` (x, y, width, height in image pixels) with the file (and ``where`` in
    it: a video's ``frame`` and ``time_s``), class and score."""
    records = []
    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(),
                                 dets.labels.tolist(), strict=True):
        x1, y1, x2, y2 = box
        records.append({
            "file_name": name, **where, "category_id": label, "category_name": names[label],
            "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
            "score": round(score, 5),
        })
    return records
