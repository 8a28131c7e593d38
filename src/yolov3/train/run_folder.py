"""A training run's folder (see :mod:`yolov3.run_folders`): what a run writes into it, and
the claim of it that every training process learns."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from yolov3.errors import YoloError
from yolov3.fileio import FolderLock
from yolov3.run_folders import claim_folder, held_files
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
    return held_files(folder, RUN_FILES)


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
            folder, lock, created = claim_folder(out, RUN_FILES, LOCK_FILE, resume=resume,
                                                 overwrite=overwrite, next_free=next_free,
                                                 resumable=True, inputs=inputs)
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
