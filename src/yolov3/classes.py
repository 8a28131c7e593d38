"""Class names: darknet ``.names`` files (one name per line) and the built-in COCO list."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from yolov3.errors import DataError


def read_names(path: str | Path) -> list[str]:
    """Class names from a file with one name per line (blank lines ignored), UTF-8 with or
    without the byte-order mark that Windows editors write."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read class names ({exc})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: the class-names file is empty")
    return names


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
