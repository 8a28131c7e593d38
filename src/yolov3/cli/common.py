"""Options shared by several commands, and the argparse types that check their values.

A light module (no torch): the parsers and ``--help`` are built from it; what the options
become when a command runs (a device, a model, its input size) is :mod:`yolov3.cli.runtime`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from yolov3.checks import at_least_problem, fraction_problem
from yolov3.choices import (
    CONF_MEANING,
    DEFAULT_CALIB_IMAGES,
    IOU_MEANING,
    NMS_IOU,
    PRECISIONS,
)
from yolov3.model.cfg import BUILTIN_CFGS, DEFAULT_MODEL, MAX_IMG_SIZE
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
        "--device", default="auto", metavar="auto|cpu|cuda",
        help="where to run: auto (the GPU when there is one, else the CPU), cpu, cuda or "
        "cuda:N (default: %(default)s)",
    )


def add_detection_args(parser: argparse.ArgumentParser, conf: float, precision: str) -> None:
    """--img-size, --conf, --iou: darknet's detection protocol, as detect and val run it
    (default score threshold ``conf``); and --precision, the number format the network runs in
    (default ``precision``), and --calib. :func:`~yolov3.cli.runtime.detect_options` makes
    them a :class:`~yolov3.inference.options.DetectOptions`.

    --conf and --iou are checked as they are parsed (a value outside [0, 1] is argparse's usage
    error) by the rule :class:`DetectOptions` applies; --img-size by
    :func:`~yolov3.checks.check_img_size` when the command runs."""
    add_img_size_arg(parser, f"network input size, a multiple of 32 from 32 to {MAX_IMG_SIZE}")
    parser.add_argument("--conf", type=fraction(CONF_MEANING), default=conf,
                        help="score threshold in [0, 1], objectness x class probability "
                        "(default: %(default)s)")
    parser.add_argument("--iou", type=fraction(IOU_MEANING), default=NMS_IOU,
                        help="IoU threshold of the per-class NMS, in [0, 1] "
                        "(default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default=precision,
                        help="number format of the network: fp32, bf16, fp16 (CUDA), int8 (CPU, "
                        "ONNX Runtime; needs --calib) or auto (bf16 where the CPU has "
                        "AVX512_BF16/AMX or on a GPU, else fp32; never int8) "
                        "(default: %(default)s)")
    add_calibration_args(parser)


def add_img_size_arg(parser: argparse.ArgumentParser, meaning: str,
                     default: int | None = None) -> None:
    """--img-size SIZE|WxH, by default (``default`` None) the input the weights were trained
    for (:func:`~yolov3.cli.runtime.input_size`); a command without weights gives its
    ``default`` side."""
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


#: ``--workers`` value that lets the command count its cores.
AUTO_WORKERS = "auto"


def workers(text: str) -> int | str:
    """An argparse ``type``: ``--workers``, ``auto`` (the command's own rule for this
    machine's cores) or a number of processes (threads for ``data check``) >= 0."""
    if text == AUTO_WORKERS:
        return text
    return at_least(0)(text)


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


