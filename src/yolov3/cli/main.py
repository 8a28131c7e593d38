"""The ``yolov3`` command: one sub-command per job (detect, val, train, export, data...).

The parsers are built from light modules (no torch): ``yolov3 --help`` and ``yolov3 VERB
--help`` answer at once, and torch loads when a command runs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from yolov3 import __version__
from yolov3.cli import anchors, data, detect, explain, export, train, val
from yolov3.cli.parser import CommandParser
from yolov3.errors import YoloError

COMMANDS = [detect, val, train, data, export, anchors, explain]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="yolov3",
        description="YOLOv3: detect, evaluate and train with darknet-exact models.",
    )
    parser.add_argument("--version", action="version", version=f"yolov3 {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error, and the "
        "log messages of the libraries yolov3 uses (faster-coco-eval, ONNX Runtime, ...)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when a message comes (not the one
    of its creation), as :data:`logging.lastResort` does."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_YOLOV3_LINES = _Stderr()
_YOLOV3_LINES.setFormatter(logging.Formatter("%(message)s"))


def configure_logging(debug: bool) -> None:
    """The ``yolov3`` logger's messages from INFO up on stderr, one line each; the root logger
    (where other libraries' messages go) is left alone, so they stay at Python's default
    (warnings and errors only): faster-coco-eval's own summary of COCOeval, which ``val``
    prints as its table, would come twice. With ``debug`` the root logger shows every library's
    INFO messages, each with its logger's name, and yolov3's DEBUG messages too."""
    log = logging.getLogger("yolov3")
    if debug:
        log.removeHandler(_YOLOV3_LINES)  # its messages reach the root's handler
        log.setLevel(logging.DEBUG)
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    else:
        log.setLevel(logging.INFO)
        if _YOLOV3_LINES not in log.handlers:
            log.addHandler(_YOLOV3_LINES)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.debug)
    try:
        return int(args.run(args) or 0)
    except YoloError as exc:
        if args.debug:
            raise
        from yolov3.inputs.loader import worker_error

        # An error raised in a data-loader worker comes back with the worker's traceback in
        # its message: print the worker's own message.
        print(f"yolov3 {args.command}: error: {worker_error(exc) or exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file system refusal no command explained (a name too long)
        if args.debug:
            raise
        from yolov3.fileio import os_error_message

        print(f"yolov3 {args.command}: error: {os_error_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"yolov3 {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
