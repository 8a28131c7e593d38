"""Options shared by several commands, and how they become a model."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import torch

from yolov3.checks import at_least_problem, fraction_problem
from yolov3.classes import default_names
from yolov3.devices import parse_device
from yolov3.errors import YoloError
from yolov3.inference.options import CONF_MEANING, IOU_MEANING, DetectOptions
from yolov3.inference.precision import PRECISIONS
from yolov3.inference.quantize import DEFAULT_CALIB_IMAGES, CalibrationImages, calibration_images
from yolov3.model import BUILTIN_CFGS, YOLOv3
from yolov3.model.cfg import MAX_IMG_SIZE
from yolov3.weights.checkpoint import is_checkpoint
from yolov3.weights.load import DEFAULT_MODEL, is_untrained, load_model
from yolov3.weights.official import PRETRAINED

#: The network input of darknet weights when --img-size is not given.
DEFAULT_IMG_SIZE = 416


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, metavar="NAME|CFG",
        help=f"architecture: a built-in name ({', '.join(BUILTIN_CFGS)}) or a darknet .cfg "
        f"file (default: {DEFAULT_MODEL}, or the network a checkpoint --weights carries)",
    )
    parser.add_argument(
        "--weights", default=None, metavar="NAME|FILE",
        help=f"darknet .weights file, a yolov3 checkpoint (.pt), an official name fetched and "
        f"cached on first use ({', '.join(PRETRAINED)}), or none (untrained); default: the "
        "official weights of a built-in --model",
    )
    parser.add_argument(
        "--device", default="cpu", metavar="cpu|cuda",
        help="where to run: cpu, cuda or cuda:N (default: %(default)s)",
    )


def add_detection_args(parser: argparse.ArgumentParser, defaults: DetectOptions,
                       precision: str) -> None:
    """--img-size, --conf, --iou: darknet's detection protocol, as detect and val run it, by
    default as in ``defaults``; and --precision, the number format the network runs in (default
    ``precision``), and --calib. :func:`detect_options` makes them a :class:`DetectOptions`.

    --conf and --iou are checked as they are parsed (a value outside [0, 1] is argparse's usage
    error) by the rule :class:`DetectOptions` applies; --img-size by
    :func:`~yolov3.checks.check_img_size` when the command runs."""
    add_img_size_arg(parser, f"network input size, a multiple of 32 from 32 to {MAX_IMG_SIZE}")
    parser.add_argument("--conf", type=fraction(CONF_MEANING), default=defaults.conf,
                        help="score threshold in [0, 1], objectness x class probability "
                        "(default: %(default)s)")
    parser.add_argument("--iou", type=fraction(IOU_MEANING), default=defaults.iou,
                        help="IoU threshold of the per-class NMS, in [0, 1] "
                        "(default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default=precision,
                        help="number format of the network: fp32, bf16, fp16 (CUDA), int8 (CPU, "
                        "ONNX Runtime; needs --calib) or auto (bf16 where the CPU has "
                        "AVX512_BF16/AMX or on a GPU, else fp32; never int8) "
                        "(default: %(default)s)")
    add_calibration_args(parser)


def detect_options(args: argparse.Namespace, model: YOLOv3, **settings: object) -> DetectOptions:
    """The :class:`DetectOptions` of :func:`add_detection_args`' options: --img-size (by
    default the weights' own input, :func:`input_size`), --conf, --iou, --precision and
    --calib; ``settings`` give the fields a command has options of its own for (detect's
    --max-det, --single-label, --backend)."""
    return DetectOptions(img_size=input_size(args, model), conf=args.conf, iou=args.iou,
                         precision=args.precision, calib=calibration_from_args(args),
                         **settings)


def add_img_size_arg(parser: argparse.ArgumentParser, meaning: str,
                     default: int | None = None) -> None:
    """--img-size SIZE|WxH, by default (``default`` None) the input the weights were trained
    for (:func:`input_size`); a command without weights gives its ``default`` side."""
    said = (f"{default}" if default is not None else "a checkpoint's own, the input its "
            f"training evaluated at; {DEFAULT_IMG_SIZE} for darknet weights")
    parser.add_argument("--img-size", type=img_size, default=default, metavar="SIZE|WxH",
                        help=f"{meaning}: one side (square) or width x height, e.g. 384x256 "
                        f"(default: {said})")


def add_calibration_args(parser: argparse.ArgumentParser) -> None:
    """--calib and --calib-images: the images that --precision int8 is calibrated on."""
    parser.add_argument("--calib", default=None, metavar="DATASET|FOLDER",
                        help="int8 calibration images, like those the model will see: a "
                        "dataset as --data takes it (its train split) or a folder of images; "
                        "required for --precision int8")
    parser.add_argument("--calib-images", type=at_least(1), default=DEFAULT_CALIB_IMAGES,
                        metavar="N", help="how many of them, evenly spaced over the set "
                        "(default: %(default)s)")


def calibration_from_args(args: argparse.Namespace) -> CalibrationImages | None:
    """The calibration images of --calib and --calib-images (None without --calib). --calib
    is an error without --precision int8, where it would be ignored."""
    if args.calib is None:
        return None
    if args.precision != "int8":
        raise YoloError(f"--calib calibrates int8 inference; add --precision int8 or leave "
                        f"--calib out (--precision is {args.precision})")
    return calibration_images(args.calib, args.calib_images)


def fraction(meaning: str) -> Callable[[str], float]:
    """An argparse ``type``: a number from 0 to 1 (a score or an IoU), ``meaning`` saying what
    it is in the error message; the rule is :func:`~yolov3.checks.fraction_problem`'s, the one
    :class:`DetectOptions` applies."""
    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
        problem = fraction_problem(value, meaning)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return number


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number no smaller than ``minimum``."""
    def integer(text: str) -> int:
        value = int(text)  # argparse turns a ValueError into "invalid integer value"
        problem = at_least_problem(value, minimum)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return integer


def img_size(text: str) -> int | tuple[int, int]:
    """``--img-size``: ``S`` (a square input, an int) or ``WxH`` (width x height, as darknet's
    cfg gives them), returned as (height, width); checked by
    :func:`~yolov3.checks.check_img_size`."""
    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a size (416) or width x height (384x256), "
                                         f"got {text!r}")
    return sides[0] if len(sides) == 1 else (sides[1], sides[0])


def input_size(args: argparse.Namespace, model: YOLOv3) -> int | tuple[int, int]:
    """The network input of --img-size; without it, that of a checkpoint --weights (its cfg's
    ``[net]`` width x height, where training writes its evaluation input: ``data.img_size`` at
    ``data.aspect``), else :data:`DEFAULT_IMG_SIZE`, the size of darknet's published COCO
    numbers (its cfgs say 608 for yolov3 and yolov3-spp)."""
    if args.img_size is not None:
        return args.img_size
    weights = args.weights
    if weights is None or not Path(weights).is_file() or not is_checkpoint(weights):
        return DEFAULT_IMG_SIZE
    height, width = model.info.height, model.info.width
    return height if height == width else (height, width)


def device_from_args(args: argparse.Namespace) -> torch.device:
    return parse_device(args.device)


def loader_workers(requested: int | None, device: torch.device) -> int:
    """``--workers`` when given; by default 2 processes decoding and letterboxing ahead of the
    network, but none on a CPU device of at most 2 cores, where the network's threads already
    take both cores: there decoding in this process measured fastest (``yolov3 val``,
    yolov3-tiny in bf16 on a 2-core Zen 4: 40.5 images/s without workers, 35.7 with 2)."""
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if device.type == "cpu" and (cores or 1) <= 2 else 2


def model_from_args(args: argparse.Namespace) -> tuple[YOLOv3, list[str]]:
    """The model that --model and --weights name (:func:`~yolov3.weights.load.load_model`), and
    its class names (from a checkpoint, else --names FILE when the command has it, else COCO's
    for 80 classes)."""
    model, names = load_model(args.model, args.weights)
    if names is None or getattr(args, "names", None):
        names = default_names(model.num_classes, getattr(args, "names", None))
    return model, names


def model_label(args: argparse.Namespace) -> str:
    """A short name for the model of --model / --weights, for titles and file names."""
    source = args.model or (None if is_untrained(args.weights) else args.weights)
    return Path(source).stem if source else DEFAULT_MODEL
