"""Class names: darknet ``.names`` files (one name per line) and the built-in COCO list."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from yolov3.errors import DataError

# Characters no class name holds: those that end a line (a names file or classes.txt would
# read the name back as two) and the other control characters.
_NOT_IN_NAMES = {"Cc", "Zl", "Zp"}


def name_fault(name: str) -> str | None:
    """Why ``name`` cannot be a class name (empty or only spaces; a line break or a control
    character), or None."""
    if not name.strip():
        return "the name is empty or only spaces; give the class a name"
    if any(unicodedata.category(c) in _NOT_IN_NAMES for c in name):
        return ("the name holds a line break or a control character, which a names file would "
                "split or garble; remove it")
    return None


def check_names(names: Sequence[str], where: str) -> list[str]:
    """``names``, the classes in index order that ``where`` (a file, and what in it) gives;
    a :class:`DataError` naming the class and ``where`` when one is empty or holds a line
    break or a control character (see :func:`name_fault`), or when two are the same (their
    boxes would be counted as one class)."""
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        fault = name_fault(name)
        if fault is not None:
            raise DataError(f"{where}: class {k} ({name!r}): {fault}")
        if name in seen:
            raise DataError(f"{where}: {name!r} is the name of classes {seen[name]} and {k}; "
                            "each class needs a name of its own (the boxes of both would be "
                            "counted as one class)")
        seen[name] = k
    return list(names)


def read_names(path: str | Path) -> list[str]:
    """Class names from a file with one name per line, each stripped of surrounding spaces
    (blank lines at the end ignored; one before a name is an error, as darknet would read it
    as a class named ""), UTF-8 with or without the byte-order mark that Windows editors
    write; checked by :func:`check_names`."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read class names ({exc})") from None
    lines = [line.strip() for line in text.split("\n")]  # line breaks of other kinds are faults
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DataError(f"{path}: the class-names file is empty")
    if "" in lines:
        k = lines.index("")
        raise DataError(f"{path}: line {k + 1} is blank: darknet reads it as class {k}, without "
                        "a name; remove it (the classes after it would move up one)")
    return check_names(lines, str(path))


def coco_names() -> list[str]:
    """The 80 COCO class names in darknet's order (``coco.names``)."""
    return read_names(Path(str(resources.files("yolov3") / "cfgs" / "coco.names")))


def default_names(num_classes: int, names_file: str | Path | None = None) -> list[str]:
    """Names for a model: from ``names_file``, else COCO's for 80 classes, else ``class0``..."""
    if names_file is not None:
        names = read_names(names_file)
        if len(names) != num_classes:
            raise DataError(
                f"{names_file}: has {len(names)} names but the model has {num_classes} classes"
            )
        return names
    if num_classes == 80:
        return coco_names()
    return [f"class{i}" for i in range(num_classes)]
