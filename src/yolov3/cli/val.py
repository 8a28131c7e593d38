"""``yolov3 val``: COCO AP of a model on a dataset, with darknet's protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from yolov3.checks import check_img_size
from yolov3.choices import DATASET_FORMS, EVAL_CONF
from yolov3.cli.common import (
    AUTO_WORKERS,
    add_detection_args,
    add_model_args,
    at_least,
    fraction,
    workers,
)
from yolov3.cli.data import add_dataset_options
from yolov3.errors import YoloError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "val",
        help="evaluate a model on a dataset (COCO AP)",
        description="COCO AP with darknet's protocol: letterboxed input, every (box, class) "
        "above --conf, per-class NMS, COCOeval (faster-coco-eval's port of pycocotools'). "
        "Writes DIR/metrics.json (with the score threshold of the best mean F1 at IoU 0.5), "
        "DIR/predictions.json (COCO results format), DIR/pr_curve.png, DIR/prf_curves.png "
        "(precision, recall and F1 against the score threshold) and DIR/confusion_matrix.png "
        "and .json.",
    )
    p.add_argument("--data", required=True, metavar="DATASET",
                   help=DATASET_FORMS.replace("%", "%%"))
    add_dataset_options(p)
    p.add_argument("--split", default="val",
                   help="split to evaluate: train, val, ... ('all' for a VOC folder; a COCO "
                   "JSON is one set) (default: %(default)s)")
    add_model_args(p)
    p.add_argument("--names", default=None, metavar="FILE",
                   help="the model's class names, one per line, when they are not the "
                   "dataset's (default: a checkpoint's own, else COCO's names for 80 classes); "
                   "classes are matched by name")
    add_detection_args(p, EVAL_CONF, precision="fp32")
    p.add_argument("--cm-conf", type=fraction("the score above which a detection counts in "
                                              "the confusion matrix"),
                   default=0.25, metavar="SCORE", help="score threshold of the confusion "
                   "matrix, in [0, 1] (default: %(default)s)")
    p.add_argument("--cm-iou", type=fraction("the overlap at which a detection finds a box in "
                                             "the confusion matrix"), default=0.45, metavar="IOU",
                   help="IoU at which a detection finds a box in the confusion matrix, in "
                   "[0, 1] (default: %(default)s)")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="images per forward pass "
                   "(default: %(default)s)")
    p.add_argument("--workers", type=workers, default=AUTO_WORKERS, metavar="auto|N",
                   help="processes that decode and letterbox images ahead of the network "
                   "(default: auto, 2, or 0 on a CPU of at most 2 cores, where the network's "
                   "threads take both)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: the first of runs/val, runs/val2, ... that "
                   "holds no earlier run); a folder holding an earlier run's report is refused "
                   "unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run's report files in --out")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from yolov3.evaluation.report import REPORT_FILES
    from yolov3.run_folders import run_folder

    inputs = {"--data": args.data, "--weights": args.weights, "--model": args.model,
              "--names": args.names}
    with run_folder(args.out, "runs/val", REPORT_FILES, ".val.lock", overwrite=args.overwrite,
                    inputs=inputs) as out:
        args.out = str(out)
        return validate(args)


def validate(args: argparse.Namespace) -> int:
    """``yolov3 val`` into the folder ``args.out`` (claimed by :func:`run`)."""
    from yolov3.cli.runtime import (
        detect_options,
        device_from_args,
        loader_workers,
        model_from_args,
    )
    from yolov3.datasets.open import open_dataset
    from yolov3.evaluation import evaluate
    from yolov3.evaluation.report import REPORT_FILES, format_best_f1
    from yolov3.fileio import refuse_overwriting_inputs, writable_dir
    from yolov3.model.cfg import as_hw

    check_img_size(args.img_size)
    dataset = open_dataset(args.data, args.split, args.images, args.strict)
    if len(dataset) == 0:
        raise YoloError(f"{args.data}: the {args.split} split has no usable images\n"
                        + dataset.problems.summary())
    device = device_from_args(args)
    refuse_overwriting_inputs([Path(args.out, name) for name in REPORT_FILES],
                              {"--data": args.data, "--weights": args.weights,
                               "--model": args.model, "--names": args.names})
    model, names = model_from_args(args)
    print(f"{dataset.format} dataset {dataset.source}, split {dataset.split}: {len(dataset)} "
          f"images, {dataset.num_boxes} boxes, {len(dataset.names)} classes")
    options = detect_options(args, model)
    result = evaluate(model, dataset, options, device=device, batch_size=args.batch_size,
                      workers=loader_workers(args.workers, device), out_dir=writable_dir(args.out),
                      model_names=names, confusion_conf=args.cm_conf, confusion_iou=args.cm_iou)
    print(format_best_f1(result["best_f1"]))
    print(f"written to {args.out}: {', '.join(REPORT_FILES)} (the confusion matrix at score > "
          f"{args.cm_conf:g}, IoU {args.cm_iou:g})")
    print(result["table"])
    timing = result["timing"]
    height, width = as_hw(options.img_size)
    print(f"{result['images']} images, input {width}x{height}, at "
          f"{timing['images_per_second']:.1f} images/s in "
          f"{result['precision']}; "
          f"COCOeval {timing['cocoeval_s']:.1f} s")
    if dataset.problems:
        print(dataset.problems.summary())
    return 0
