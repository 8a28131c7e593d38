"""A run's folder: which folder a run writes into, claimed and locked against other live runs.

``yolov3 train`` never writes over another run: without ``--out`` it takes the first of
``runs/train``, ``runs/train2``, ... that holds none; a named folder that holds one is refused
unless the run is resumed (``--resume``) or replaced (``--overwrite``).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path

import torch

from yolov3.errors import YoloError
from yolov3.fileio import FolderInUseError, FolderLock, remove_partial_writes, writable_dir
from yolov3.train.distributed import Processes

log = logging.getLogger("yolov3")

#: The first iterations whose first minibatch is drawn as ``train_batchN.jpg``.
BATCH_PICTURES = 3
#: What a run writes into its folder: a folder holding any of these holds a run.
RUN_FILES = ("last.pt", "best.pt", "results.json", "results.csv", "config.yaml", "model.cfg",
             "last.weights", "curves.png", "tensorboard", "val_images", "labels.png",
             *(f"train_batch{n}.jpg" for n in range(BATCH_PICTURES)))
#: The lock file that keeps a second live run out of a run's folder.
LOCK_FILE = ".train.lock"


def run_files(folder: str | Path) -> list[str]:
    """The files and folders of a run that ``folder`` holds (see :data:`RUN_FILES`)."""
    folder = Path(folder)
    return [name for name in RUN_FILES if (folder / name).exists()]


def _numbered(base: Path, n: int) -> Path:
    """``runs/train``, ``runs/train2``, ``runs/train3``, ..."""
    return base if n == 1 else base.with_name(f"{base.name}{n}")


def delete_run_files(folder: Path, names: list[str]) -> None:
    """Delete the run files ``names`` (of :data:`RUN_FILES`) from ``folder``."""
    for name in names:
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def claim_run_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False,
                     next_free: bool = False, procs: Processes | None = None,
                     inputs: dict[str, str | None] | None = None,
                     ) -> tuple[Path, FolderLock | None, bool]:
    """:func:`claim_folder` by rank 0 of ``procs`` (the training processes); every process
    learns which folder it is, or the error (the others hold no lock)."""
    procs = procs or Processes()
    error: Exception | None = None
    folder, lock, created = Path(out), None, False
    if procs.is_main:
        try:
            folder, lock, created = claim_folder(out, resume=resume, overwrite=overwrite,
                                                 next_free=next_free, inputs=inputs)
        except Exception as exc:  # told to the other processes, which would wait
            error = exc
    if procs.distributed:
        shared = [str(folder), None if error is None else str(error)]
        torch.distributed.broadcast_object_list(shared, src=0)
        folder = Path(shared[0])
        if shared[1] is not None and error is None:
            error = YoloError(shared[1])
    if error is not None:
        raise error
    if procs.is_main and not resume:  # a resumed run says so as it restores
        log.info("run folder: %s", folder)
    return folder, lock, created


def claim_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False,
                 next_free: bool = False, inputs: dict[str, str | None] | None = None,
                 ) -> tuple[Path, FolderLock, bool]:
    """The folder a run writes into, locked against other live runs, and whether it was made
    now: ``out`` itself, which must not hold another run unless ``resume`` (continue it) or
    ``overwrite`` (its run files are deleted first, unless one of them is among ``inputs``, the
    files the run reads by setting: then nothing is deleted); with ``next_free``, the first of
    ``out``, ``out2``, ``out3``, ... that holds no run and no live run. The temporary files
    that a run killed while writing left there are removed."""
    base = Path(out)
    for n in range(1, 100_000):
        folder = _numbered(base, n) if next_free else base
        if next_free and run_files(folder):
            continue
        created = not folder.exists()
        writable_dir(folder)
        lock = FolderLock(folder, LOCK_FILE)
        try:
            lock.acquire()
        except FolderInUseError:
            remove_if_empty(folder, created)
            if next_free:
                continue
            raise
        try:
            found = run_files(folder)
            if found and next_free:  # a run that ended while we looked
                lock.release()
                continue
            if found and not resume:
                if not overwrite:
                    raise YoloError(
                        f"{folder} holds an earlier run ({', '.join(found)}): continue it with "
                        f"--resume {folder}, replace it with --overwrite, or choose another "
                        "--out")
                _refuse_deleting_inputs(folder, found, inputs or {})
                delete_run_files(folder, found)
                log.info("--overwrite: deleted the earlier run's %s in %s", ", ".join(found),
                         folder)
            left = [*remove_partial_writes(folder), *remove_partial_writes(folder / "val_images")]
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
    run files ``names`` of ``folder``, or a file inside its ``tensorboard``/``val_images``, is
    an input (setting -> path) itself."""
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
