"""The output folder of ``yolov3 data convert``: written only when it is new or empty, or when
it holds nothing but an earlier conversion's files, which the next conversion replaces.

``OUT/.yolov3-convert`` (JSON) marks a folder as a conversion's output: the source it converted
and every file it wrote. A conversion of the same source replaces those files; one of another
source does so only when asked (``--overwrite``), so that two datasets never merge; a folder
that holds anything else (another dataset, a file added since) is never written to."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from yolov3.errors import DataError
from yolov3.fileio import atomic_write

MARKER = ".yolov3-convert"


def _entries(out: Path) -> list[str]:
    """Every file, link or other non-folder under ``out`` (links not followed), as paths
    relative to it with ``/``, sorted."""
    found = []
    for folder, dirs, files in os.walk(out):
        here = Path(folder).relative_to(out)
        found += [(here / name).as_posix() for name in files]
        found += [(here / name).as_posix() for name in dirs if os.path.islink(Path(folder, name))]
    return sorted(found)


def _marker(out: Path) -> dict | None:
    """The marker's source and files, or None when there is no usable marker."""
    try:
        marked = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(marked, dict) and isinstance(marked.get("source"), str)
            and isinstance(marked.get("files"), list)):
        return None
    return marked


def earlier_output(out: Path, source: str, overwrite: bool) -> list[Path]:
    """The files of an earlier conversion in ``out`` that a conversion of ``source`` replaces
    (none when ``out`` is new or holds no file). A :class:`DataError` saying what to do when
    ``out`` holds a file that no conversion wrote, or another source's conversion without
    ``overwrite``."""
    if not out.is_dir():
        return []
    entries = _entries(out)
    if not entries:
        return []
    marked = _marker(out)
    if marked is None:
        raise DataError(f"{out}: is not empty (it holds {out / entries[0]}) and is not the output "
                        "of an earlier conversion; a conversion writes only into an empty or new "
                        "folder, so that it never overwrites or merges with another dataset: "
                        "choose an empty or new --out")
    written = {*marked["files"], MARKER}
    foreign = [e for e in entries if e not in written]
    if foreign:
        raise DataError(f"{out}: holds {out / foreign[0]}, which the earlier conversion (of "
                        f"{marked['source']}) did not write; a conversion replaces only its own "
                        "files: move it away, or choose an empty or new --out")
    if marked["source"] != source and not overwrite:
        raise DataError(f"{out}: holds the conversion of {marked['source']}; converting {source} "
                        "there would merge the two datasets: choose an empty or new --out, or "
                        "give --overwrite to replace that conversion (only the files it wrote "
                        "are deleted)")
    return [out / e for e in entries if e != MARKER]


def remove_earlier(out: Path, files: list[Path]) -> None:
    """Delete an earlier conversion's ``files`` (links themselves, never what they point to)
    and the folders under ``out`` left empty."""
    for file in files:
        file.unlink(missing_ok=True)
    for folder in sorted({p for f in files for p in f.parents if out in p.parents},
                         key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: it holds other files too
            folder.rmdir()


def mark(out: Path, source: str, fmt: str, files: list[Path]) -> None:
    """Write the marker: ``out`` is the conversion of ``source`` to ``fmt`` and holds
    ``files`` (written before them, so that a conversion cut short is replaced too)."""
    listed = sorted({f.relative_to(out).as_posix() for f in files})
    with atomic_write(out / MARKER) as f:
        f.write(json.dumps({"written_by": "yolov3 data convert", "source": source,
                            "format": fmt, "files": listed}, indent=1).encode())
