"""Every option of every command, read from the parsers themselves: which commands take it and
what value it takes; rendered as Markdown for the documentation
(``python -m yolov3.cli.option_table``)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from yolov3.cli.parser import OldSpelling

# How a value's type reads in the table, by the name of the argparse ``type`` (``at_least``
# makes an ``integer``, ``fraction`` a ``number``).
_KINDS = {"int": "integer", "float": "number", "img_size": "SIZE or WxH"}


@dataclass(frozen=True)
class OptionUse:
    """One option of one command: ``kind`` is what value it takes (``flag`` for none,
    ``choice`` with its ``choices``, else the value's type: ``integer``, ``number``, ``text``,
    ...); ``old`` marks an earlier release's spelling, kept for one release (``replacement``
    says what to write instead)."""

    command: str
    option: str
    kind: str
    choices: tuple[str, ...] = ()
    old: bool = False
    replacement: str = ""


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[
        tuple[str, argparse.ArgumentParser]]:
    """The commands under ``parser`` with their names (``detect``, ``data check``...): the
    parsers that have no sub-commands of their own."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield prefix, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from commands(sub, f"{prefix} {name}".strip())


def value_kind(action: argparse.Action) -> str:
    """What ``action`` takes: ``flag``, ``choice``, or its value's type."""
    if action.nargs == 0:
        return "flag"
    if action.choices is not None:
        return "choice"
    name = "text" if action.type is None else getattr(action.type, "__name__", "text")
    kind = _KINDS.get(name, name)
    return f"{kind}, repeatable" if isinstance(action, argparse._AppendAction) else kind


def option_uses(parser: argparse.ArgumentParser) -> list[OptionUse]:
    """Each long option of each command under ``parser`` (``--help`` left out)."""
    uses = []
    for command, sub in commands(parser):
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            old = isinstance(action, OldSpelling)
            for option in (o for o in action.option_strings if o.startswith("--")):
                uses.append(OptionUse(
                    command, option, value_kind(action), tuple(action.choices or ()), old,
                    action.replacement if old else ""))
    return uses


def option_table(parser: argparse.ArgumentParser) -> dict[str, list[OptionUse]]:
    """The uses of each option, by its name, in the order the options first come."""
    table: dict[str, list[OptionUse]] = {}
    for use in option_uses(parser):
        table.setdefault(use.option, []).append(use)
    return table


def markdown_table(parser: argparse.ArgumentParser) -> str:
    """The table as Markdown: one row per option (sorted) with the value it takes and the
    commands that have it; then the old spellings that still work, and what replaces each."""
    rows = ["| Option | Takes | Commands |", "| --- | --- | --- |"]
    old = ["| Old spelling | Use instead | Commands |", "| --- | --- | --- |"]
    for option, uses in sorted(option_table(parser).items()):
        for replacement in dict.fromkeys(u.replacement for u in uses if u.old):
            names = ", ".join(f"`{u.command}`" for u in uses if u.replacement == replacement)
            old.append(f"| `{option}` | `{replacement}` | {names} |")
        current = [u for u in uses if not u.old]
        if not current:
            continue
        kinds = dict.fromkeys(u.kind for u in current)
        choices = dict.fromkeys(c for u in current for c in u.choices)
        takes = ", ".join(kinds) + (": " + ", ".join(f"`{c}`" for c in choices)
                                    if choices else "")
        names = ", ".join(f"`{u.command}`" for u in current)
        rows.append(f"| `{option}` | {takes} | {names} |")
    return "\n".join(rows) + "\n\n" + "\n".join(old) + "\n"


if __name__ == "__main__":
    from yolov3.cli.main import build_parser

    print(markdown_table(build_parser()), end="")
