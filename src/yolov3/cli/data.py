"""``yolov3 data``: dataset tools, one sub-command each (``convert``, ``check``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from yolov3.choices import DATASET_FORMATS, DATASET_FORMS
from yolov3.cli.common import AUTO_WORKERS, workers


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """``--images`` and ``--strict``, for every command that reads a dataset."""
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="image folder of a COCO JSON (default: images/ beside it, else "
                        "its own folder); an error for the other formats, which name their "
                        "own images")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad label (default: skip the image, count it "
                        "and report at the end)")


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a dataset between COCO JSON, YOLO txt and Pascal VOC",
        description="Write every split of SRC in another format, images copied (or linked), "
        "into an empty or new --out (or over an earlier conversion of SRC), and read it back "
        "to check that every image and box came through. Boxes and class names come through "
        "exactly (YOLO txt: to six decimals of the image side). "
        + DATASET_FORMS.replace("--data", "SRC"),
    )
    p.add_argument("src", metavar="SRC", help="the dataset (any form --data takes)")
    p.add_argument("--to", required=True, choices=DATASET_FORMATS, help="the format to write")
    p.add_argument("--out", required=True, metavar="DIR", help="the output folder")
    add_dataset_options(p)
    p.add_argument("--symlink", action="store_true",
                   help="link the images instead of copying them")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier conversion of another dataset in --out (only the "
                   "files it wrote are deleted; an earlier conversion of SRC is replaced "
                   "without it, and a folder holding anything else is never written to)")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from yolov3.datasets.convert import convert
    from yolov3.datasets.problems import UNREADABLE

    splits = convert(args.src, args.to, args.out, args.images, args.strict, args.symlink,
                     args.overwrite)
    for split, ds in splits.items():
        left_out = ds.problems.kinds.count(UNREADABLE)  # found while converting
        print(f"{split}: {len(ds) - left_out} images"
              + (f" ({left_out} unreadable left out)" if left_out else "")
              + f", {ds.num_boxes} boxes -> {args.out} ({args.to})")
    for split, ds in splits.items():
        if ds.problems:
            print(f"{split}: {ds.problems.summary()}")
    return 0


def add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="read every image and label of a dataset and report its problems",
        description="Decode every image and read every label of DATASET (all its splits, or "
        "--split) and report, with counts and first examples: unreadable or truncated images, "
        "JPEGs cut short (read as far as they go), images without labels, labels without "
        "images, malformed labels, classes out of range, boxes outside the image or of zero "
        "area, duplicate boxes (same class, IoU > 0.95), EXIF-rotated images whose labels fit "
        "one orientation only, images whose size differs from their annotation, and the boxes "
        "per class. Exit status 0 when clean, 1 "
        "when problems were found. " + DATASET_FORMS.replace("--data", "DATASET"),
    )
    p.add_argument("dataset", metavar="DATASET", help="the dataset (any form --data takes)")
    p.add_argument("--split", default=None,
                   help="check this split only (default: every split the dataset defines)")
    p.add_argument("--images", default=None, metavar="DIR",
                   help="image folder of a COCO JSON (default: images/ beside it, else its own "
                   "folder); an error for the other formats, which name their own images")
    p.add_argument("--fix-report", default=None, metavar="FILE",
                   help="also write every finding (not only the first examples) as JSON")
    p.add_argument("--workers", type=workers, default=AUTO_WORKERS, metavar="auto|N",
                   help="threads that decode images, 0 for one image at a time "
                   "(default: auto, the CPU count, at most 8)")
    p.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from yolov3.datasets.check import check_dataset
    from yolov3.fileio import writable_dir

    if args.fix_report:
        writable_dir(Path(args.fix_report).parent)
    report = check_dataset(args.dataset, args.split, args.images,
                           None if args.workers == AUTO_WORKERS else args.workers)
    print(report.text())
    if args.fix_report:
        report.write(args.fix_report)
        print(f"every finding written to {args.fix_report}")
    return 1 if report.problems else 0


# The ``yolov3 data`` sub-commands: each adds its parser (with ``run`` set) to the group.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_convert_parser,
                                                                   add_check_parser]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools (convert, check)",
                       description="Dataset tools: convert between formats, check a dataset.")
    group = p.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    for add in SUBCOMMANDS:
        add(group)
