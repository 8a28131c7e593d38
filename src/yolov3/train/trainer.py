"""The training loop: darknet's recipe, one iteration after another, and hooks around it.

One iteration is one optimiser step of ``optimizer.batch`` images, taken as ``subdivisions``
minibatches whose gradients add up (darknet's loss is a sum). Everything that decides the
course of a run (the learning rate, the data order, the input sizes and the augmentation) is a
pure function of the iteration and the seed, so a run resumed from a checkpoint continues
exactly where it stopped. Everything else a run does (evaluation, checkpoints, logging, the
stop rules, the divergence guard, the files for its user) is a hook (:mod:`yolov3.train.hooks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm import tqdm

from yolov3.devices import describe_device
from yolov3.fileio import FolderLock
from yolov3.inputs.loader import TrainLoader, make_train_loader
from yolov3.model.network import YOLOv3
from yolov3.run_folders import delete_files, remove_if_empty
from yolov3.train.checkpoints import (
    TrainState,
    check_room,
    dataset_record,
    restore_run,
    save_run,
)
from yolov3.train.datasets import prepare_training_data
from yolov3.train.distributed import minibatch_per_process, start_processes
from yolov3.train.hooks import (
    Checkpoints,
    DivergenceGuard,
    Evaluation,
    History,
    ProgressBar,
    StepInfo,
    StopRules,
    call,
)
from yolov3.train.loggers import make_loggers
from yolov3.train.optim import build_optimizer, learning_rate
from yolov3.train.parts import build_ema, build_network, build_train_step, record_paths
from yolov3.train.run_files import RunFiles, results_summary
from yolov3.train.run_folder import LOCK_FILE, claim_run_folder, run_files
from yolov3.weights.load import load_pretrained

if TYPE_CHECKING:
    from yolov3.train.config import TrainConfig

log = logging.getLogger("yolov3")


class StopRequestedError(Exception):
    """SIGINT or SIGTERM arrived: the trainer saves a checkpoint and stops cleanly."""


class Trainer:
    """Runs ``config`` and writes everything into ``out``: checkpoints ``last.pt`` and
    ``best.pt``, ``config.yaml``, ``model.cfg`` with ``last.weights`` (darknet),
    ``results.csv``, TensorBoard logs, ``curves.png``, ``results.json`` and annotated
    validation images."""

    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = False, *,
                 overwrite: bool = False, next_free: bool = False,
                 hooks: Sequence[Any] = (), inputs: dict[str, str | None] | None = None,
                 ) -> None:
        """``out`` is the run's folder: it must not hold another run unless ``resume`` (continue
        the run in it from its ``last.pt``) or ``overwrite`` (delete that run's files first);
        with ``next_free`` the run takes the first of ``out``, ``out2``, ``out3``, ... that
        holds no run (see :func:`~yolov3.train.run_folder.claim_run_folder`). The folder is
        locked until :meth:`train` ends (or :meth:`close`), so that no second live run writes
        into it. ``hooks``: the user's own (:class:`~yolov3.train.hooks.Hook`), called after
        the packaged ones that log and before those that save checkpoints, on every process of
        a distributed run (``trainer.procs.is_main`` is rank 0). ``inputs``: files
        the run read beyond its config's (``{"--config": path}``), which ``overwrite`` must not
        delete (nor the config's weights, cfg and dataset)."""
        self.config, self.out = config, Path(out)
        self.user_hooks = list(hooks)
        run = config.train
        self.procs, self.device = start_processes(run.torch_device)
        reads = {"model.weights": config.model.weights, "model.cfg": config.model.cfg,
                 "data.dataset": config.data.dataset, **(inputs or {})}
        self.out, self._lock, self._created_out = claim_run_folder(
            self.out, resume=resume, overwrite=overwrite, next_free=next_free, procs=self.procs,
            inputs=reads)
        try:
            self._setup(resume)
        except BaseException:
            self.close(remove_empty=True)
            raise

    def close(self, remove_empty: bool = False) -> None:
        """Release the run's folder (its lock); with ``remove_empty``, a folder this run made
        and wrote nothing into is removed too."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            remove_if_empty(self.out, self._created_out and remove_empty)

    def _setup(self, resume: bool) -> None:
        config, run = self.config, self.config.train
        self.minibatch = minibatch_per_process(
            config.optimizer.batch, config.optimizer.subdivisions, self.procs.world_size)
        torch.manual_seed(run.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = run.cudnn_benchmark
        if not resume:
            record_paths(config)
        self.train_data, self.val_data, self.val_boxes = prepare_training_data(
            config, warn=self.procs.is_main)
        self.names = list(self.train_data.names)
        plan = config.schedule.resolve(len(self.train_data), config.optimizer.batch)
        if self.procs.is_main:
            log.info("device: %s; loader: %d processes", describe_device(self.device),
                     run.loader_workers)
            log.info("schedule: %s", plan)
        self.model = build_network(config, self.train_data, self.device, self.procs)
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.state = TrainState()
        averaged = restore_run(self, self.out / "last.pt") if resume else None
        if not resume and config.model.weights:
            message = load_pretrained(self.model, config.model.weights)
            if self.procs.is_main:
                log.info("%s", message)
        self.model.freeze(config.model.freeze)
        self.model.freeze_bn(config.model.freeze_bn)
        self.ema = build_ema(self.model, config.ema, averaged)
        self.step = build_train_step(self.model, self.optimizer, self.ema, config, self.device,
                                     self.procs)
        if not resume:
            self.state.dataset = dataset_record(self)
        self.saved_iteration = self.state.iteration if resume else None
        self.ending = False
        self.interrupted: str | None = None
        self.session_start = 0.0  # when this session's first iteration started (the loop)
        if self.procs.is_main:
            check_room(self)

    @property
    def detector(self) -> YOLOv3:
        """The network that evaluation, ``best.pt`` and the exported weights hold: the moving
        average of the weights when the recipe keeps one, else the trained network."""
        return self.model if self.ema is None else self.ema.model

    # --- the loop ---

    def _loader(self) -> TrainLoader:
        """The training data from the current iteration on (darknet's augmentation and
        multi-scale inputs)."""
        cfg = self.config
        return make_train_loader(
            self.train_data, self.minibatch * self.procs.world_size,
            transform=cfg.augment.build(cfg.data.max_labels), mix=cfg.augment.build_mix(),
            multiscale=cfg.multiscale.build(cfg.data.img_size, float(cfg.data.aspect)),
            subdivisions=cfg.optimizer.subdivisions, workers=cfg.train.loader_workers,
            seed=cfg.train.seed,
            start_iteration=self.state.iteration, max_iterations=cfg.schedule.max_iter,
            pin_memory=self.device.type == "cuda", rank=self.procs.rank,
            world_size=self.procs.world_size,
        )

    def _iterations(self, loader: TrainLoader) -> Iterator[list[tuple[Tensor, list[Tensor]]]]:
        """The minibatches of each iteration, on the device."""
        minibatches: list[tuple[Tensor, list[Tensor]]] = []
        for images, targets, _ in loader:
            images = images.to(self.device, non_blocking=True)
            minibatches.append((images, [t.to(self.device) for t in targets]))
            if len(minibatches) == self.config.optimizer.subdivisions:
                yield minibatches
                minibatches = []


    @property
    def hooks(self) -> list[Any]:
        """Every hook of the run, in the order they are called: the divergence guard and the
        stop rules first (they decide whether this iteration is the last), then the history,
        evaluation, files and loggers, the user's hooks, and the checkpoints last."""
        return self._hooks

    def _make_hooks(self) -> list[Any]:
        run = self.config.train
        if not self.procs.is_main:  # the hooks with collective operations
            return [DivergenceGuard(), StopRules(), Evaluation(), *self.user_hooks, Checkpoints()]
        return [DivergenceGuard(), StopRules(), History(), Evaluation(), RunFiles(),
                *make_loggers(run.loggers, self.out, run.log_interval), *self.user_hooks,
                ProgressBar(), Checkpoints()]

    def finish_early(self, reason: str) -> None:
        """End the run after this iteration as if it were the last (evaluation, checkpoint,
        the end-of-run files); ``reason`` is printed."""
        if self.procs.is_main:
            tqdm.write(reason)
        self.ending = True

    def save(self, name: str = "last.pt") -> None:
        """Write the checkpoint ``name`` (rank 0 only; the others hold the same weights): see
        :func:`~yolov3.train.checkpoints.save_run`."""
        if not self.procs.is_main:
            return
        save_run(self, name)
        if name == "last.pt":
            self.saved_iteration = self.state.iteration

    def train(self) -> dict[str, Any]:
        """Train to ``schedule.max_iter`` (or ``train.time_limit``); returns the results
        summary that rank 0 also writes to ``results.json``. The run's folder is released
        when it returns or raises. SIGINT or SIGTERM stop it with a checkpoint and raise
        :class:`StopRequestedError`."""
        if self.procs.is_main and self._lock is None:  # train() again after it ended
            self._lock = FolderLock(self.out, LOCK_FILE)
            self._lock.acquire()
        self._hooks = self._make_hooks()
        try:
            call(self.hooks, "before_train", self)
            loader = self._loader()
            self._loop(loader)
            if loader.skipped:
                log.warning("%d unreadable training images were replaced by others; the first:"
                            " %s", len(loader.skipped), loader.skipped[0])
            results = results_summary(self, len(loader.skipped))
            if self.procs.is_main:
                call(self.hooks, "after_train", self, results)
            self.procs.barrier()
            return results
        except BaseException:
            if self.procs.is_main and self.saved_iteration is None:  # nothing to resume
                delete_files(self.out, run_files(self.out))
            raise
        finally:
            call(self.hooks, "close", self)
            self.close(remove_empty=True)

    def _loop(self, loader: TrainLoader) -> None:
        """The iterations, each between the hooks, until the last or a stop."""
        cfg, state = self.config, self.state
        self.model.train()
        start, start_wall = time.perf_counter(), state.wall_time
        self.session_start = step_start = start
        for minibatches in self._iterations(loader):
            iteration = state.iteration + 1
            call(self.hooks, "before_step", self, iteration, minibatches)
            stats = self.step(minibatches, learning_rate(iteration, cfg))
            now = time.perf_counter()
            state.iteration, state.wall_time = iteration, start_wall + now - start
            self.ending = iteration == cfg.schedule.max_iter
            images = sum(len(m[0]) for m in minibatches) * self.procs.world_size
            info = StepInfo(iteration, stats, images, now - step_start,
                            tuple(minibatches[0][0].shape[-2:]))
            call(self.hooks, "after_step", self, info)
            if self.interrupted:
                if self.procs.is_main:
                    tqdm.write(f"{self.interrupted}: checkpoint written at iteration "
                               f"{iteration} to {self.out / 'last.pt'}; continue with "
                               f"--resume {self.out}")
                raise StopRequestedError
            if self.ending:
                return
            step_start = time.perf_counter()
