"""Options shared by several commands, and the argparse types that check their values.

A light module (no torch): the parsers and ``--help`` are built from it; what the options
become when a command runs (a device, a model, its input size) is :mod:`yolov3.cli.runtime`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from yolov3.choices import DEFAULT_CALIB_IMAGES, PRECISIONS
from yolov3.errors import YoloError
from yolov3.model.cfg import BUILTIN_CFGS, DEFAULT_MODEL, MAX_IMG_SIZE, STRIDE
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
    """--img-size, --conf, --iou: darknet's detection protocol, as detect and val run it; and
    --precision, the number format the network runs in (default ``precision``).

    --conf and --iou are checked as they are parsed (a value outside [0, 1] is argparse's usage
    error); --img-size by :func:`check_img_size` when the command runs."""
    add_img_size_arg(parser, f"network input size, a multiple of 32 from 32 to {MAX_IMG_SIZE}")
    parser.add_argument("--conf", type=fraction("a score threshold: objectness x class "
                                                "probability"), default=conf,
                        help="score threshold in [0, 1], objectness x class probability "
                        "(default: %(default)s)")
    parser.add_argument("--iou", type=fraction("the overlap above which the per-class NMS "
                                               "drops the weaker box"), default=0.45,
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
    it is in the error message. NaN and infinities are refused: a comparison with NaN is always
    false, which would keep every box or none without a word."""
    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
        if not 0.0 <= value <= 1.0:  # also False for NaN
            raise argparse.ArgumentTypeError(f"must be in [0, 1] ({meaning}), got {text}")
        return value

    return number


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number no smaller than ``minimum``."""
    def integer(text: str) -> int:
        value = int(text)  # argparse turns a ValueError into "invalid integer value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
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
    cfg gives them), returned as (height, width); checked by :func:`check_img_size`."""
    parts = text.lower().split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a size (416) or width x height (384x256), "
                                         f"got {text!r}")
    return sides[0] if len(sides) == 1 else (sides[1], sides[0])


def check_img_size(size: int | tuple[int, int] | None,
                   square: str | None = None) -> int | tuple[int, int] | None:
    """``--img-size`` as the network takes it: each side a multiple of its total stride from
    the stride to :data:`~yolov3.model.cfg.MAX_IMG_SIZE`; else a :class:`YoloError` saying
    so. None (not given: the weights' own, :func:`~yolov3.cli.runtime.input_size`) passes.
    ``square``, for a command that takes one side only, says why in the error that a width x
    height gets."""
    if size is None:
        return None
    if not isinstance(size, int) and square:
        height, width = size
        raise YoloError(f"--img-size {width}x{height}: {square}; give one side, e.g. "
                        f"--img-size {max(size)}")
    if not isinstance(size, int):
        for side in size:
            check_img_size(side)
        return size
    if size <= 0 or size % STRIDE:
        raise YoloError(f"--img-size {size} is not a multiple of {STRIDE} greater than 0 (the "
                        f"network's total stride is {STRIDE}): use {STRIDE}, {2 * STRIDE}, ... "
                        f"up to {MAX_IMG_SIZE}")
    if size > MAX_IMG_SIZE:
        gigabytes = 32 * size * size * 4 / 1e9  # the first layer's 32 float32 channels
        raise YoloError(f"--img-size {size} is above the largest accepted, {MAX_IMG_SIZE}: the "
                        "network's memory grows with the square of the input side (at "
                        f"{size}x{size} the first layer's output alone is {gigabytes:,.0f} GB; "
                        "the models are trained at 320 to 608); use a multiple of 32 from 32 to "
                        f"{MAX_IMG_SIZE}")
    return size
