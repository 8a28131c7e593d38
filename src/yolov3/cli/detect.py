"""``yolov3 detect``: boxes on images, folders, videos, streams and URLs, as annotated pictures
and videos, JSON records and (``--save-txt``) YOLO label files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from yolov3.checks import check_img_size
from yolov3.choices import BACKENDS, DETECT_CONF
from yolov3.cli.common import (
    add_detection_args,
    add_model_args,
    at_least,
    workers,
)
from yolov3.errors import DataError, YoloError

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
        "and an annotated DIR/NAME.mp4 of each video (H.264, which browsers play, where OpenCV "
        "or PyAV can write it (pip install av), else MPEG-4 Part 2, mp4v; the line of the video "
        "says which; the frames processed, at the source's frame rate divided by --vid-stride), "
        "DIR/detections.jsonl as the detections are found (one JSON record a line; a video "
        "frame's also say its 0-based 'frame' and 'time_s') and DIR/detections.json at the end, "
        "also of a run stopped with Ctrl-C.",
    )
    p.add_argument("paths", nargs="+", metavar="SOURCE",
                   help="image files, folders, glob patterns, video files, webcam indices, "
                   "stream and image URLs (see above)")
    add_model_args(p)
    add_detection_args(p, DETECT_CONF, precision="auto")
    p.add_argument("--single-label", action="store_true",
                   help="keep only the best class of each box (default: every class above "
                   "--conf, as darknet does)")
    p.add_argument("--names", default=None, metavar="FILE",
                   help="the model's class names, one per line (default: a checkpoint's own, "
                   "else COCO's 80 names for 80 classes)")
    p.add_argument("--classes", default=None, metavar="NAME|ID,...",
                   help="keep only these classes: names or 0-based indices of the model's "
                   "classes, separated by commas (person,car or 0,2) (default: all)")
    p.add_argument("--max-det", type=at_least(1), default=300,
                   help="at most this many detections an image or frame, the best "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=1,
                   help="images or video frames per forward pass (default: %(default)s)")
    p.add_argument("--workers", type=workers, default=0, metavar="auto|N",
                   help="processes that decode and letterbox images ahead of the model; "
                   "video frames are read in this process; auto: 2, or 0 on a CPU of at most "
                   "2 cores (default: %(default)s)")
    p.add_argument("--threads", type=at_least(1), default=None,
                   help="CPU threads of the engine, torch or onnxruntime (default: PyTorch's, "
                   "which follows OMP_NUM_THREADS, else one per core)")
    p.add_argument("--backend", choices=BACKENDS, default="torch",
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
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="how long to wait for a URL's server (default: %(default)s)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for the pictures, videos, labels and detections.json "
                   "(default: the first of runs/detect, runs/detect2, ... that holds no earlier "
                   "run); a folder holding an earlier run's detections.json is refused unless "
                   "--overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run's detections.json in --out")
    p.set_defaults(run=run)


def seconds(text: str) -> float:
    """An argparse ``type``: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


#: What a finished detect run leaves in its folder besides pictures, videos and labels: a
#: folder holding it holds an earlier run (``detections.jsonl`` alone, the stream of a run that
#: did not finish, is replaced).
DETECT_FILES = ("detections.json",)


def run(args: argparse.Namespace) -> int:
    from yolov3.run_folders import run_folder

    with run_folder(args.out, "runs/detect", DETECT_FILES, ".detect.lock",
                    overwrite=args.overwrite) as out:
        args.out = str(out)
        return detect(args)


def detect(args: argparse.Namespace) -> int:
    """``yolov3 detect`` into the folder ``args.out`` (claimed by :func:`run`)."""
    import torch

    from yolov3.backends import make_detector
    from yolov3.cli.detect_job import DetectionFiles, DetectRun, check_outputs
    from yolov3.cli.runtime import (
        detect_options,
        device_from_args,
        loader_workers,
        model_from_args,
    )
    from yolov3.fileio import writable_dir
    from yolov3.inference.labels import LabelFolder, earlier_labels
    from yolov3.inference.select import class_ids
    from yolov3.inference.sources import gather_sources

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
            job.images(sources.images, image_stems, args.batch_size,
                       loader_workers(args.workers, device))
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
