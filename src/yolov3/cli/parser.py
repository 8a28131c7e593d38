"""The command line's argument parser: an unknown or misspelt option is the command's own usage
and the nearest option names; an old spelling of an option still works for one release, with a
one-line warning."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

#: Spellings that other YOLO tools (darknet, ultralytics) or earlier releases of this one use,
#: and the option that means the same here: an unknown option names it, for the commands that
#: have it.
SPELLINGS: dict[str, str] = {
    "--batch": "--batch-size",
    "--cfg": "--model",
    "--conf-thres": "--conf",
    "--epoch": "--epochs",
    "--half": "--precision fp16",
    "--img": "--img-size",
    "--imgsz": "--img-size",
    "--iou-thres": "--iou",
    "--project": "--out",
}


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose commands refuse what they do not know
    themselves: argparse leaves an unknown option of a sub-command to the top-level parser,
    which prints the top-level usage (``usage: yolov3 [-h] ...``); here the command that was
    given prints its own usage, and each unknown option comes with the nearest option names
    of that command (:data:`SPELLINGS`, else :func:`difflib.get_close_matches`). Exit status 2,
    as argparse's."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a command, not a group of commands
            self.unknown(extras)
        return namespace, extras

    def unknown(self, extras: list[str]) -> NoReturn:
        """Exit with this command's usage and what it has instead of each unknown option."""
        message = f"unrecognized arguments: {' '.join(extras)}"
        hints = [hint for arg in extras if (hint := self.nearest(arg))]
        self.error("; ".join([message, *hints]))

    def nearest(self, arg: str) -> str | None:
        """``--conff: did you mean --conf?`` for an unknown option ``arg``; None for a value
        (or an option too far from all of this command's)."""
        if not arg.startswith("--"):
            return None
        name = arg.split("=", 1)[0]
        options = self.option_names()
        known = SPELLINGS.get(name)
        if known is not None and known.split()[0] in options:
            close = [known]
        else:
            close = difflib.get_close_matches(name, sorted(options), n=3, cutoff=0.6)
        return f"{name}: did you mean {' or '.join(close)}?" if close else None

    def option_names(self) -> set[str]:
        """The long options that this command shows in its help (old spellings left out)."""
        return {o for a in self._actions if a.help != argparse.SUPPRESS
                for o in a.option_strings if o.startswith("--")}


class OldSpelling(argparse.Action):
    """An option's spelling of an earlier release, kept for one release: it does what
    ``replacement`` does (``dest``, ``nargs``, ``type``, ``const`` as given) after a one-line
    warning on stderr, and is left out of the help."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str,
                 **kwargs: Any) -> None:
        kwargs.setdefault("default", argparse.SUPPRESS)  # the replacement's default stands
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated and goes in the next "
              f"release: use {self.replacement}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_old_spelling(parser: argparse.ArgumentParser, old: str, replacement: str,
                     dest: str, **kwargs: Any) -> None:
    """Keep ``old`` working as ``replacement`` for one release (:class:`OldSpelling`)."""
    parser.add_argument(old, action=OldSpelling, dest=dest, replacement=replacement, **kwargs)
