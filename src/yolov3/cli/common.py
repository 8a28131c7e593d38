"""Options shared by several commands, and how they become a model."""

from __future__ import annotations

import argparse

import torch

from yolov3.classes import default_names
from yolov3.errors import YoloError
from yolov3.hub import PRETRAINED
from yolov3.model import BUILTIN_CFGS, Darknet
from yolov3.pretrained import load_model


def add_model_args(parser: argparse.ArgumentParser, default_model: str = "yolov3") -> None:
    parser.add_argument(
        "--model", default=default_model, metavar="NAME|CFG",
        help=f"architecture: a built-in name ({', '.join(BUILTIN_CFGS)}) or a darknet .cfg "
        "file (default: %(default)s)",
    )
    parser.add_argument(
        "--weights", default=None, metavar="NAME|FILE",
        help=f"darknet .weights file, or an official name fetched and cached on first use "
        f"({', '.join(PRETRAINED)}); default: the official weights of a built-in --model",
    )
    parser.add_argument(
        "--device", default="cpu", metavar="cpu|cuda",
        help="where to run: cpu, cuda or cuda:N (default: %(default)s)",
    )


def device_from_args(args: argparse.Namespace) -> torch.device:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise YoloError("--device cuda was asked for but no CUDA GPU is available; use cpu")
    return device


def model_from_args(args: argparse.Namespace) -> tuple[Darknet, list[str]]:
    """The model that --model and --weights name, in eval mode, and its class names (from a
    checkpoint, else --classes when the command has it, else COCO's for 80 classes)."""
    weights = args.weights
    if weights is None and args.model in BUILTIN_CFGS:
        weights = args.model
    model, names = load_model(args.model, weights)
    if names is None or getattr(args, "classes", None):
        names = default_names(model.num_classes, getattr(args, "classes", None))
    return model, names
