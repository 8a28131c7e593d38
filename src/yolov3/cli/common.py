"""Options shared by several commands, and how they become a model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from yolov3.classes import default_names
from yolov3.errors import YoloError
from yolov3.model import BUILTIN_CFGS, YOLOv3
from yolov3.weights.load import DEFAULT_MODEL, load_model
from yolov3.weights.official import PRETRAINED


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


def add_detection_args(parser: argparse.ArgumentParser, conf: float) -> None:
    """--img-size, --conf and --iou: darknet's detection protocol, as detect and val run it."""
    parser.add_argument("--img-size", type=int, default=416,
                        help="network input size, a multiple of 32 (default: %(default)s)")
    parser.add_argument("--conf", type=float, default=conf,
                        help="score threshold, objectness x class probability "
                        "(default: %(default)s)")
    parser.add_argument("--iou", type=float, default=0.45,
                        help="IoU threshold of the per-class NMS (default: %(default)s)")


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number no smaller than ``minimum``."""
    def integer(text: str) -> int:
        value = int(text)  # argparse turns a ValueError into "invalid integer value"
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return integer


def check_img_size(size: int) -> int:
    """``--img-size`` as the network takes it: a positive multiple of its total stride, 32."""
    if size <= 0 or size % 32:
        raise YoloError(f"--img-size {size} is not a multiple of 32 greater than 0")
    return size


def device_from_args(args: argparse.Namespace) -> torch.device:
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise YoloError(f"--device {args.device} is not a device: use cpu, cuda or "
                        "cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise YoloError("--device cuda was asked for but no CUDA GPU is available; use cpu")
    return device


def untrained(args: argparse.Namespace) -> bool:
    """--weights none: the cfg's random initialisation."""
    return args.weights is not None and args.weights.lower() == "none"


def model_from_args(args: argparse.Namespace) -> tuple[YOLOv3, list[str]]:
    """The model that --model and --weights name, in eval mode, and its class names (from a
    checkpoint, else --classes when the command has it, else COCO's for 80 classes)."""
    weights, cfg = args.weights, args.model
    if weights is None:
        weights = cfg or DEFAULT_MODEL
        if weights not in BUILTIN_CFGS:
            raise YoloError(f"--model {cfg} has no official weights: give --weights FILE (or "
                            "--weights none for an untrained network)")
    elif untrained(args):
        weights = None
    elif cfg is None and weights in BUILTIN_CFGS:  # official weights name their network
        cfg = weights
    model, names = load_model(cfg, weights)
    if names is None or getattr(args, "classes", None):
        names = default_names(model.num_classes, getattr(args, "classes", None))
    return model, names


def model_label(args: argparse.Namespace) -> str:
    """A short name for the model of --model / --weights, for titles and file names."""
    source = args.model or (None if untrained(args) else args.weights)
    return Path(source).stem if source else DEFAULT_MODEL
