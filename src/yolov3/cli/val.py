"""``yolov3 val``: COCO AP of a model on a dataset, with darknet's protocol."""

from __future__ import annotations

import argparse

from yolov3.cli.common import (
    add_detection_args,
    add_model_args,
    at_least,
    check_img_size,
    device_from_args,
    model_from_args,
)
from yolov3.cli.data import add_dataset_options
from yolov3.datasets.open import FORMS, open_dataset
from yolov3.errors import YoloError
from yolov3.evaluation import evaluate
from yolov3.fileio import writable_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "val",
        help="evaluate a model on a dataset (COCO AP)",
        description="COCO AP with darknet's protocol: letterboxed input, every (box, class) "
        "above --conf, per-class NMS, pycocotools' COCOeval. Writes DIR/metrics.json, "
        "DIR/predictions.json (COCO results format) and DIR/pr_curve.png.",
    )
    p.add_argument("--data", required=True, metavar="DATASET", help=FORMS.replace("%", "%%"))
    add_dataset_options(p)
    p.add_argument("--split", default="val",
                   help="split to evaluate: train, val, ... ('all' for a VOC folder; a COCO "
                   "JSON is one set) (default: %(default)s)")
    add_model_args(p)
    p.add_argument("--classes", default=None, metavar="FILE",
                   help="the model's class names, one per line, when they are not the "
                   "dataset's (default: COCO's names for 80 classes); classes are matched by "
                   "name")
    add_detection_args(p, conf=0.005, precision="fp32")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="images per forward pass "
                   "(default: %(default)s)")
    p.add_argument("--workers", type=at_least(0), default=2,
                   help="processes that decode and letterbox images (default: %(default)s)")
    p.add_argument("--out", default="runs/val", metavar="DIR",
                   help="output folder (default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_img_size(args.img_size)
    dataset = open_dataset(args.data, args.split, args.images, args.strict)
    if len(dataset) == 0:
        raise YoloError(f"{args.data}: the {args.split} split has no usable images\n"
                        + dataset.problems.summary())
    device = device_from_args(args)
    model, names = model_from_args(args)
    print(f"{dataset.format} dataset {dataset.source}, split {dataset.split}: {len(dataset)} "
          f"images, {dataset.num_boxes} boxes, {len(dataset.names)} classes")
    result = evaluate(model, dataset, args.img_size, args.conf, args.iou, args.batch_size,
                      device, writable_dir(args.out), args.workers, names,
                      precision=args.precision)
    print(result["table"])
    timing = result["timing"]
    print(f"{result['images']} images at {timing['images_per_second']:.1f} images/s in "
          f"{result['precision']}; "
          f"COCOeval {timing['cocoeval_s']:.1f} s; written to {args.out}/metrics.json, "
          "predictions.json, pr_curve.png")
    if dataset.problems:
        print(dataset.problems.summary())
    return 0
