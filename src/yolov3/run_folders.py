"""Run folders: where a command writes its results, so that no run writes over another.

Without ``--out`` every run gets a folder of its own, the first of ``runs/VERB``,
``runs/VERB2``, ... that holds no earlier run's files (``yolov3 train``, ``detect``, ``val``;
``export`` numbers its file's folder the same way); a named ``--out`` that holds one is
refused unless the run replaces it (``--overwrite``, which never deletes what the run reads)
or continues it (``train --resume``). A live run locks its folder against a second one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from yolov3.errors import YoloError
from yolov3.fileio import (
    FolderInUseError,
    FolderLock,
    refuse_overwriting_inputs,
    remove_partial_writes,
    writable_dir,
)

log = logging.getLogger("yolov3")


def next_free_file(base: str | Path, name: str) -> Path:
    """``base/name``, or the first of ``base2/name``, ``base3/name``, ... that does not exist."""
    for n in range(1, 100_000):
        path = numbered(Path(base), n) / name
        if not path.exists():
            return path
    raise YoloError(f"{base}: no free numbered folder beside it")


def export_path(out: str | Path | None, file_name: str,
                inputs: dict[str, str | None]) -> Path:
    """Where ``yolov3 export`` (and ``YOLO.export``) writes: ``out``, or ``file_name`` in the
    first of ``runs/export``, ``runs/export2``, ... without it; refused when it is one of the
    files the export reads, ``inputs`` (option -> path)."""
    path = Path(out) if out is not None else next_free_file("runs/export", file_name)
    refuse_overwriting_inputs([path], inputs)
    return path


def numbered(base: Path, n: int) -> Path:
    """``runs/detect``, ``runs/detect2``, ``runs/detect3``, ..."""
    return base if n == 1 else base.with_name(f"{base.name}{n}")


def delete_files(folder: Path, names: list[str]) -> None:
    """Delete the files and folders ``names`` of a run from ``folder``."""
    for name in names:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def held_files(folder: str | Path, files: Sequence[str]) -> list[str]:
    """Which of a run's ``files`` (and folders) ``folder`` holds."""
    return [name for name in files if (Path(folder) / name).exists()]


def claim_folder(out: str | Path, files: Sequence[str], lock_name: str, *, resume: bool = False,
                 overwrite: bool = False, next_free: bool = False, resumable: bool = False,
                 inputs: dict[str, str | None] | None = None,
                 ) -> tuple[Path, FolderLock, bool]:
    """The folder a command's run writes into, locked against other live runs (the lock file
    ``lock_name``), and whether it was made now: ``out`` itself, which must not hold another
    run's ``files`` unless ``resume`` (continue it: ``yolov3 train``) or ``overwrite`` (those
    files are deleted first, unless one of them is among ``inputs``, the files the run reads,
    by option: then nothing is deleted); with ``next_free``, the first of ``out``, ``out2``,
    ``out3``, ... that holds no run and no live run (``resumable``: the refusal says how to
    continue the run). The temporary files that a run killed while writing left there are
    removed."""
    base = Path(out)
    for n in range(1, 100_000):
        folder = numbered(base, n) if next_free else base
        if next_free and held_files(folder, files):
            continue
        created = not folder.exists()
        writable_dir(folder)
        lock = FolderLock(folder, lock_name)
        try:
            lock.acquire()
        except FolderInUseError:
            remove_if_empty(folder, created)
            if next_free:
                continue
            raise
        try:
            found = held_files(folder, files)
            if found and next_free:  # a run that ended while we looked
                lock.release()
                continue
            if found and not resume:
                if not overwrite:
                    hint = f"continue it with --resume {folder}, " if resumable else ""
                    raise YoloError(
                        f"{folder} holds an earlier run ({', '.join(found)}): {hint}"
                        "replace it with --overwrite, or choose another --out (without --out "
                        "every run gets a folder of its own)")
                _refuse_deleting_inputs(folder, found, inputs or {})
                delete_files(folder, found)
                log.info("--overwrite: deleted the earlier run's %s in %s", ", ".join(found),
                         folder)
            left = [p for sub in (folder, *(folder / n for n in files)) if sub.is_dir()
                    for p in remove_partial_writes(sub)]
            if left:
                log.info("removed %d partial files that an interrupted run left in %s (%s)",
                         len(left), folder, ", ".join(p.name for p in left[:3]))
        except BaseException:
            lock.release()
            remove_if_empty(folder, created)
            raise
        return folder, lock, created
    raise YoloError(f"{base}: no free numbered folder beside it")


def remove_if_empty(folder: Path, created: bool) -> None:
    """Remove ``folder`` when this run made it and left nothing in it."""
    if created:
        with contextlib.suppress(OSError):  # not empty: keep it
            folder.rmdir()


def _refuse_deleting_inputs(folder: Path, names: list[str], inputs: dict[str, str | None]) -> None:
    """A :class:`YoloError` when ``--overwrite`` would delete a file the run reads: one of the
    run files ``names`` of ``folder``, or a file inside one of its folders, is an input
    (option -> path) itself."""
    doomed = [folder / n for n in names]
    for setting, value in inputs.items():
        if not value or not Path(value).exists():
            continue
        path = Path(value).resolve()
        hit = next((d for d in doomed if path == d.resolve() or d.resolve() in path.parents),
                   None)
        if hit is not None:
            raise YoloError(
                f"--overwrite would delete {hit}, which this run reads ({setting} {value}): "
                f"copy it out of {folder} first (or continue that run with --resume "
                f"{folder}), or choose another --out")


@contextlib.contextmanager
def run_folder(out: str | Path | None, default: str, files: Sequence[str], lock_name: str, *,
               overwrite: bool = False,
               inputs: dict[str, str | None] | None = None) -> Iterator[Path]:
    """The folder of one command's run, held (locked) while the ``with`` block runs: ``out``,
    or without it the first free of ``default``, ``default2``, ... (see :func:`claim_folder`);
    a folder made for a run that wrote nothing is removed again."""
    folder, lock, created = claim_folder(out or default, files, lock_name,
                                         next_free=out is None, overwrite=overwrite,
                                         inputs=inputs)
    try:
        yield folder
    finally:
        lock.release()
        remove_if_empty(folder, created)
