"""The ``yolov3`` command: one sub-command per job (detect, val, train, export, data...)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from yolov3 import __version__
from yolov3.cli import anchors, data, detect, explain, export, train, val
from yolov3.errors import YoloError
from yolov3.fileio import os_error_message
from yolov3.inputs.loader import worker_error

COMMANDS = [detect, val, train, data, export, anchors, explain]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yolov3",
        description="YOLOv3: detect, evaluate and train with darknet-exact models.",
    )
    parser.add_argument("--version", action="version", version=f"yolov3 {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.run(args) or 0)
    except YoloError as exc:
        if args.debug:
            raise
        # An error raised in a data-loader worker comes back with the worker's traceback in
        # its message: print the worker's own message.
        print(f"yolov3 {args.command}: error: {worker_error(exc) or exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file system refusal no command explained (a name too long)
        if args.debug:
            raise
        print(f"yolov3 {args.command}: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"yolov3 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
