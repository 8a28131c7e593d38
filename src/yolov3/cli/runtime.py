"""What the shared options (:mod:`yolov3.cli.common`) become when a command runs: the device,
the model and its class names, the network input, the int8 calibration images and the data
loader's workers."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import torch

from yolov3.classes import default_names
from yolov3.cli.common import AUTO_WORKERS, DEFAULT_IMG_SIZE
from yolov3.devices import describe_device, parse_device
from yolov3.errors import YoloError
from yolov3.inference.options import DetectOptions
from yolov3.inference.quantize import CalibrationImages, calibration_images
from yolov3.model.cfg import DEFAULT_MODEL
from yolov3.model.network import YOLOv3
from yolov3.weights.checkpoint import is_checkpoint
from yolov3.weights.load import is_untrained, load_model

log = logging.getLogger("yolov3")


def calibration_from_args(args: argparse.Namespace) -> CalibrationImages | None:
    """The calibration images of --calib and --calib-images (None without --calib). --calib
    is an error without --precision int8, where it would be ignored."""
    if args.calib is None:
        return None
    if args.precision != "int8":
        raise YoloError(f"--calib calibrates int8 inference; add --precision int8 or leave "
                        f"--calib out (--precision is {args.precision})")
    return calibration_images(args.calib, args.calib_images)


def input_size(args: argparse.Namespace, model: YOLOv3) -> int | tuple[int, int]:
    """The network input of --img-size; without it, that of a checkpoint --weights (its cfg's
    ``[net]`` width x height, where training writes its evaluation input: ``data.img_size`` at
    ``data.aspect``), else :data:`~yolov3.cli.common.DEFAULT_IMG_SIZE`, the size of darknet's
    published COCO numbers (its cfgs say 608 for yolov3 and yolov3-spp)."""
    if args.img_size is not None:
        return args.img_size
    weights = args.weights
    if weights is None or not Path(weights).is_file() or not is_checkpoint(weights):
        return DEFAULT_IMG_SIZE
    height, width = model.info.height, model.info.width
    return height if height == width else (height, width)


def device_from_args(args: argparse.Namespace) -> torch.device:
    """The device --device names, said in the log with its hardware's name."""
    device = parse_device(args.device)
    log.info("device: %s", describe_device(device))
    return device


def loader_workers(requested: int | str, device: torch.device) -> int:
    """``--workers`` when given; by default 2 processes decoding and letterboxing ahead of the
    network, but none on a CPU device of at most 2 cores, where the network's threads already
    take both cores: there decoding in this process measured fastest (``yolov3 val``,
    yolov3-tiny in bf16 on a 2-core Zen 4: 40.5 images/s without workers, 35.7 with 2)."""
    if requested != AUTO_WORKERS:
        return int(requested)
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


def detect_options(args: argparse.Namespace, model: YOLOv3, **settings: object) -> DetectOptions:
    """The :class:`DetectOptions` of :func:`add_detection_args`' options: --img-size (by
    default the weights' own input, :func:`input_size`), --conf, --iou, --precision and
    --calib; ``settings`` give the fields a command has options of its own for (detect's
    --max-det, --single-label, --backend)."""
    return DetectOptions(img_size=input_size(args, model), conf=args.conf, iou=args.iou,
                         precision=args.precision, calib=calibration_from_args(args),
                         **settings)
