"""``yolov3 data``: dataset tools, one sub-command each (``convert``; more beside it)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from yolov3.data.convert import FORMATS, convert
from yolov3.data.datasets import FORMS


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    """``--images`` and ``--strict``, for every command that reads a dataset."""
    parser.add_argument("--images", default=None, metavar="DIR",
                        help="image folder of a COCO JSON (default: images/ beside it, else "
                        "its own folder)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first bad label (default: skip the image, count it "
                        "and report at the end)")


def add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a dataset between COCO JSON, YOLO txt and Pascal VOC",
        description="Write every split of SRC in another format, images copied (or linked). "
        "Boxes and class names come through exactly. " + FORMS.replace("--data", "SRC"),
    )
    p.add_argument("src", metavar="SRC", help="the dataset (any form --data takes)")
    p.add_argument("--to", required=True, choices=FORMATS, help="the format to write")
    p.add_argument("--out", required=True, metavar="DIR", help="the output folder")
    add_dataset_options(p)
    p.add_argument("--symlink", action="store_true",
                   help="link the images instead of copying them")
    p.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    splits = convert(args.src, args.to, args.out, args.images, args.strict, args.symlink)
    for split, ds in splits.items():
        print(f"{split}: {len(ds)} images, {ds.num_boxes} boxes -> {args.out} ({args.to})")
    for split, ds in splits.items():
        if ds.problems:
            print(f"{split}: {ds.problems.summary()}")
    return 0


# The ``yolov3 data`` sub-commands: each adds its parser (with ``run`` set) to the group.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_convert_parser]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset tools (convert)",
                       description="Dataset tools: convert between formats.")
    group = p.add_subparsers(dest="data_command", required=True, metavar="TOOL")
    for add in SUBCOMMANDS:
        add(group)
