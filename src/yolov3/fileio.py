"""Paths as users write them, and file writing that never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from yolov3.errors import YoloError


def expand_home(raw: str | Path) -> Path:
    """``raw`` with a leading ``~`` or ``~user`` made that home folder; a ``~user`` with no
    such user stays as written, so that the caller reports a path that does not exist."""
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # pathlib's "Could not determine home directory"
        return Path(raw)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it is flushed to
    disk and renamed over ``path``, so readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the permissions of a normal new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable_dir(path: str | Path) -> Path:
    """``path`` as a folder this process can write files in, created when missing; a
    :class:`YoloError` naming it when it cannot be created or written (checked before a long
    run, not at its end)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = "it is a file" if path.is_file() else exc.strerror or str(exc)
        raise YoloError(f"{path}: cannot write output files there ({reason}); choose another "
                        "output folder or make it writable") from None
    return path
