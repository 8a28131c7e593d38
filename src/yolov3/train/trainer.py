"""The training loop: darknet's recipe, checkpoints, evaluation and what the user sees.

One iteration is one optimiser step of ``optimizer.batch`` images, taken as ``subdivisions``
minibatches whose gradients add up (darknet's loss is a sum). Everything that decides the
course of a run (the learning rate, the data order, the input sizes and the augmentation) is a
pure function of the iteration and the seed, so a run resumed from a checkpoint continues
exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from yolov3.anchors import fit_anchors_for_training
from yolov3.datasets.base import evenly_spaced
from yolov3.devices import parse_device
from yolov3.errors import DataError, YoloError
from yolov3.evaluation import evaluate
from yolov3.fileio import (
    DiskFullError,
    FolderInUseError,
    FolderLock,
    atomic_write,
    format_bytes,
    free_bytes,
    remove_partial_writes,
    writable_dir,
)
from yolov3.inference import Detector
from yolov3.inference.draw import draw_detections
from yolov3.inputs.loader import TrainLoader, make_train_loader
from yolov3.model.cfg import (
    Anchors,
    cfg_anchors,
    format_anchors,
    format_cfg,
    load_cfg,
    unread_training_keys,
)
from yolov3.model.network import YOLOv3, build_model
from yolov3.train.config import AUTO_ASPECT, BASE_PRESET, TrainConfig, amp_mode
from yolov3.train.datasets import check_training_data, median_aspect, open_training_data
from yolov3.train.distributed import minibatch_per_process, start_processes
from yolov3.train.ema import WeightsEMA
from yolov3.train.optim import apply_optimizer_config, build_optimizer, learning_rate
from yolov3.train.pictures import save_batch_picture, save_label_picture
from yolov3.train.report import plot_curves, write_json
from yolov3.train.step import TrainStep
from yolov3.weights.checkpoint import load_checkpoint, save_checkpoint
from yolov3.weights.darknet import save_darknet_weights
from yolov3.weights.load import load_pretrained

log = logging.getLogger("yolov3")

#: The first iterations whose first minibatch is drawn as ``train_batchN.jpg``.
BATCH_PICTURES = 3
#: What a run writes into its folder: a folder holding any of these holds a run.
RUN_FILES = ("last.pt", "best.pt", "results.json", "model.cfg", "last.weights", "curves.png",
             "tensorboard", "val_images", "labels.png",
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


def claim_run_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False,
                     next_free: bool = False) -> tuple[Path, FolderLock, bool]:
    """The folder a run writes into, locked against other live runs, and whether it was made
    now: ``out`` itself, which must not hold another run unless ``resume`` (continue it) or
    ``overwrite`` (its run files are deleted first); with ``next_free``, the first of ``out``,
    ``out2``, ``out3``, ... that holds no run and no live run. The temporary files that a run
    killed while writing left there are removed."""
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
            _remove_if_empty(folder, created)
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
                for name in found:
                    target = folder / name
                    if target.is_dir() and not target.is_symlink():
                        shutil.rmtree(target)
                    else:
                        target.unlink()
                log.info("--overwrite: deleted the earlier run's %s in %s", ", ".join(found),
                         folder)
            left = [*remove_partial_writes(folder), *remove_partial_writes(folder / "val_images")]
            if left:
                log.info("removed %d partial files that an interrupted run left in %s (%s)",
                         len(left), folder, ", ".join(p.name for p in left[:3]))
        except BaseException:
            lock.release()
            _remove_if_empty(folder, created)
            raise
        return folder, lock, created
    raise YoloError(f"{base}: no free numbered folder beside it")


def _remove_if_empty(folder: Path, created: bool) -> None:
    """Remove ``folder`` when this run made it and left nothing in it."""
    if created:
        with contextlib.suppress(OSError):  # not empty: keep it
            folder.rmdir()


@dataclass
class TrainState:
    """What a checkpoint restores besides the tensors: progress and history."""

    iteration: int = 0
    best_ap50: float = -1.0
    best_iteration: int = 0
    wall_time: float = 0.0
    losses: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


class StopRequestedError(Exception):
    """SIGINT or SIGTERM arrived: the trainer saves a checkpoint and stops cleanly."""


class Trainer:
    """Runs ``config`` and writes everything into ``out``: checkpoints ``last.pt`` and
    ``best.pt``, ``model.cfg`` with ``last.weights`` (darknet), TensorBoard logs, ``curves.png``,
    ``results.json`` and annotated validation images."""

    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = False, *,
                 overwrite: bool = False, next_free: bool = False) -> None:
        """``out`` is the run's folder: it must not hold another run unless ``resume`` (continue
        the run in it from its ``last.pt``) or ``overwrite`` (delete that run's files first);
        with ``next_free`` the run takes the first of ``out``, ``out2``, ``out3``, ... that
        holds no run (see :func:`claim_run_folder`). The folder is locked until
        :meth:`train` ends (or :meth:`close`), so that no second live run writes into it."""
        self.config, self.out = config, Path(out)
        run = config.train
        self.procs, self.device = start_processes(parse_device(run.device, "train.device"))
        self._lock: FolderLock | None = None
        self._created_out = False
        self._claim(resume, overwrite, next_free)
        try:
            self._setup(resume)
        except BaseException:
            self.close(remove_empty=True)
            raise

    def _claim(self, resume: bool, overwrite: bool, next_free: bool) -> None:
        """Rank 0 claims the run's folder; every process learns which it is."""
        error: Exception | None = None
        if self.procs.is_main:
            try:
                self.out, self._lock, self._created_out = claim_run_folder(
                    self.out, resume=resume, overwrite=overwrite, next_free=next_free)
            except Exception as exc:  # told to the other processes, which would wait
                error = exc
        if self.procs.distributed:
            shared = [str(self.out), None if error is None else str(error)]
            torch.distributed.broadcast_object_list(shared, src=0)
            self.out = Path(shared[0])
            if shared[1] is not None and error is None:
                error = YoloError(shared[1])
        if error is not None:
            raise error
        if self.procs.is_main and not resume:  # a resumed run says so as it restores
            log.info("run folder: %s", self.out)

    def close(self, remove_empty: bool = False) -> None:
        """Release the run's folder (its lock); with ``remove_empty``, a folder this run made
        and wrote nothing into is removed too."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
            _remove_if_empty(self.out, self._created_out and remove_empty)

    def _setup(self, resume: bool) -> None:
        config, run = self.config, self.config.train
        self.minibatch = minibatch_per_process(
            config.optimizer.batch, config.optimizer.subdivisions, self.procs.world_size)
        torch.manual_seed(run.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = run.cudnn_benchmark
        self.train_data, self.val_data = open_training_data(config)
        for split in (self.train_data, self.val_data):
            if split.problems and self.procs.is_main:
                log.warning("%s split: %s", split.split, split.problems.summary())
        self.val_boxes = check_training_data(self.train_data, self.val_data,
                                             config.data.max_labels, warn=self.procs.is_main)
        if config.data.aspect == AUTO_ASPECT:  # recorded, so that a resumed run keeps it
            config.data.aspect = median_aspect(self.train_data)
            if self.procs.is_main:
                log.info("data.aspect auto: %s (the training images' median width / height): "
                         "inputs of %dx%d at data.img_size", config.data.aspect,
                         *config.data.input_hw[::-1])
        self.names = list(self.train_data.names)
        sections = load_cfg(config.model.cfg)  # read once: the checks, anchors and network
        unread = unread_training_keys(sections)
        if unread and self.procs.is_main:
            log.info("%s: not read: %s; the training recipe is the config's (the %s preset, "
                     "--config and the options)", config.model.cfg, ", ".join(unread),
                     BASE_PRESET)
        self.model = build_model(sections, num_classes=len(self.names),
                                 anchors=self._anchors(len(cfg_anchors(sections))),
                                 input_hw=config.data.input_hw,
                                 ignore_thresh=config.loss.ignore_override).to(self.device)
        if self.procs.distributed and run.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if run.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.state = TrainState()
        self._saved_ema: tuple[dict[str, Tensor], int] | None = None
        if resume:
            self._restore(self.out / "last.pt")
        elif config.model.weights:
            message = load_pretrained(self.model, config.model.weights)
            if self.procs.is_main:
                log.info("%s", message)
        self.model.freeze(config.model.freeze)
        self.model.freeze_bn(config.model.freeze_bn)
        self.ema = self._ema()
        self.step = self._train_step()
        self._stop_signal: int | None = None
        self._nonfinite_in_row = 0
        self._saved_iteration = self.state.iteration if resume else None
        if self.procs.is_main:
            self._check_room()

    def _anchors(self, count: int) -> Anchors | None:
        """``model.anchors``: None keeps the cfg's; ``auto`` fits ``count`` (as many as the
        cfg has) by k-means on the training boxes (YOLOv2's 1 - IoU distance) and records them
        in the config, so that a resumed run and ``model.cfg`` use the same; else the pairs
        given."""
        model = self.config.model
        if model.anchors == "auto":
            fitted = fit_anchors_for_training(self.train_data, count, self.config.data.img_size,
                                              self.config.train.seed)
            model.anchors = format_anchors(fitted)
            if self.procs.is_main:
                log.info("anchors fitted to the training boxes: %s", model.anchors)
        return model.anchor_pairs()

    def _ema(self) -> WeightsEMA | None:
        """The moving average of the weights (``ema.decay`` > 0), that of the checkpoint when
        the run is resumed from one that has it."""
        cfg = self.config.ema
        if not cfg.decay:
            return None
        ema = WeightsEMA(self.model, cfg.decay, cfg.ramp)
        if self._saved_ema is not None:
            ema.load(*self._saved_ema)
        return ema

    @property
    def detector(self) -> YOLOv3:
        """The network that evaluation, ``best.pt`` and the exported weights hold: the moving
        average of the weights when the recipe keeps one, else the trained network."""
        return self.model if self.ema is None else self.ema.model

    def _train_step(self) -> TrainStep:
        """The iteration as ``train`` asks it to run: DistributedDataParallel across processes,
        torch.compile, channels-last inputs, mixed precision."""
        run = self.config.train
        amp = amp_mode(run.amp, str(self.device))
        if self.procs.is_main and run.amp == "auto":
            log.info("train.amp auto: %s on %s", amp, self.device)
        return TrainStep(
            self.model, self.optimizer, amp=amp, channels_last=run.channels_last,
            compile=run.compile, world_size=self.procs.world_size,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            loss=self.config.loss.build(), ema=self.ema,
        )

    # --- checkpoints -------------------------------------------------------------------------

    def _restore(self, path: Path) -> None:
        if not path.is_file():
            raise YoloError(f"--resume: {path} does not exist; nothing to resume")
        payload = load_checkpoint(path)
        # With a moving average, "model" is the average (what a detector loads) and the
        # weights that training continues from are "training_model".
        self._saved_ema = ((payload["model"], int(payload["ema_updates"]))
                           if "training_model" in payload else None)
        try:
            self.model.load_state_dict(payload.get("training_model", payload["model"]))
        except RuntimeError as exc:
            raise YoloError(f"{path}: the checkpoint does not fit this model ({exc})") from None
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            # The checkpoint brings the saved run's momentum and decay; the config may differ.
            apply_optimizer_config(self.optimizer, self.model, self.config.optimizer)
            self.state = TrainState(**payload["state"])
        except (ValueError, TypeError, KeyError) as exc:
            raise YoloError(f"{path}: its optimiser or training state does not fit this run "
                            f"({exc}); start a new run with --weights {path}") from None
        torch.set_rng_state(payload["torch_rng"])
        log.info("resuming %s at iteration %d", path, self.state.iteration)

    def save(self, name: str = "last.pt") -> None:
        """Write a checkpoint (rank 0 only; the others hold the same weights). A disk too full
        for it is a :class:`DiskFullError` that names the folder and the room a checkpoint
        needs; the previous file stays as it was."""
        if not self.procs.is_main:
            return
        averaged = {}
        if self.ema is not None:
            self.ema.model.seen = self.model.seen
            averaged = {"training_model": {k: v.detach().cpu()
                                           for k, v in self.model.state_dict().items()},
                        "ema_updates": self.ema.updates}
        try:
            save_checkpoint(
                self.out / name, self.detector, self.names, **averaged,
                optimizer=self.optimizer.state_dict(),
                config=self.config.to_dict(),
                state=self.state.__dict__,
                torch_rng=torch.get_rng_state(),
            )
        except DiskFullError as exc:
            if not (self.out / name).is_file():
                kept = f"no earlier {name} exists"
            elif name == "last.pt" and self._saved_iteration is not None:
                kept = f"the previous {name} (iteration {self._saved_iteration}) is intact"
            else:
                kept = f"the previous {name} is intact"
            raise DiskFullError(exc.path, exc.reason, exc.written, code=exc.errno, message=(
                f"{self.out}: {exc.reason}: the checkpoint {name} could not be written at "
                f"iteration {self.state.iteration} (a checkpoint of this run needs at least "
                f"{format_bytes(self._checkpoint_bytes())}; {format_bytes(exc.free)} free "
                f"there); {kept}. Free some space there (or copy {self.out} to a disk with "
                f"room) and continue with --resume")) from exc
        if name == "last.pt":
            self._saved_iteration = self.state.iteration

    def _checkpoint_bytes(self) -> int:
        """What a checkpoint needs at least: the model's tensors and the optimiser's momentum
        of every trainable parameter (the cfg, the config and the history come on top)."""
        tensors = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        momentum = sum(p.numel() * p.element_size() for p in self.model.parameters()
                       if p.requires_grad)
        return tensors * (1 if self.ema is None else 2) + momentum

    def _check_room(self) -> None:
        """Refuse to start a run whose folder's disk cannot hold even one checkpoint."""
        needed, free = self._checkpoint_bytes(), free_bytes(self.out)
        if free is not None and free < needed:
            raise YoloError(
                f"{self.out}: no space left on the disk for this run: a checkpoint needs at "
                f"least {format_bytes(needed)} and {format_bytes(free)} is free there; free "
                "some space or choose another --out")

    # --- the loop ----------------------------------------------------------------------------

    def _loader(self) -> TrainLoader:
        """The training data from the current iteration on (darknet's augmentation and
        multi-scale inputs)."""
        cfg = self.config
        return make_train_loader(
            self.train_data, self.minibatch * self.procs.world_size,
            transform=cfg.augment.build(cfg.data.max_labels), mix=cfg.augment.build_mix(),
            multiscale=cfg.multiscale.build(cfg.data.img_size, float(cfg.data.aspect)),
            subdivisions=cfg.optimizer.subdivisions, workers=cfg.train.workers, seed=cfg.train.seed,
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

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def train(self) -> dict[str, Any]:
        """Train to ``schedule.max_iter`` (or ``train.time_limit``); returns the results
        summary that rank 0 also writes to ``results.json``. The run's folder is released
        when it returns or raises."""
        if self.procs.is_main and self._lock is None:  # train() again after it ended
            self._lock = FolderLock(self.out, LOCK_FILE)
            self._lock.acquire()
        try:
            return self._train()
        finally:
            self.close()

    def _train(self) -> dict[str, Any]:
        cfg, run, main = self.config, self.config.train, self.procs.is_main
        if main:
            with atomic_write(self.out / "model.cfg") as f:
                f.write(format_cfg(self.model.sections).encode())
            if not (self.out / "labels.png").is_file():
                save_label_picture(*self.train_data.training_boxes(), self.names,
                                   self.out / "labels.png")
        writer = SummaryWriter(str(self.out / "tensorboard")) if main else None
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        start_time, start_wall = time.perf_counter(), self.state.wall_time
        self.model.train()
        bar = tqdm(total=cfg.schedule.max_iter, initial=self.state.iteration, unit="it",
                   desc="train", dynamic_ncols=True, disable=not main)
        loader = self._loader()
        try:
            step_start = time.perf_counter()
            for minibatches in self._iterations(loader):
                iteration = self.state.iteration + 1
                if main and iteration <= BATCH_PICTURES:  # what the recipe feeds the network
                    save_batch_picture(*minibatches[0], self.names,
                                       self.out / f"train_batch{iteration - 1}.jpg")
                stats = self.step(minibatches, learning_rate(iteration, cfg))
                now = time.perf_counter()
                self.state.iteration = iteration
                self.state.wall_time = start_wall + now - start_time
                images = sum(len(m[0]) for m in minibatches) * self.procs.world_size
                rate = images / max(now - step_start, 1e-9)
                if self._check_finite(stats, iteration) and writer is not None:
                    self._log(writer, iteration, stats, images, rate)
                bar.update(1)
                bar.set_postfix_str(self._postfix(stats, rate, minibatches[0][0].shape[-2:]))
                out_of_time = self.procs.any(
                    bool(run.time_limit) and now - start_time > run.time_limit, self.device)
                stop = self.procs.any(self._stop_signal is not None, self.device)
                last = iteration == cfg.schedule.max_iter or out_of_time
                if (run.eval_interval and self.val_boxes
                        and (iteration % run.eval_interval == 0 or last)):
                    self._evaluate(writer, iteration)
                if last or (run.checkpoint_interval and iteration % run.checkpoint_interval == 0):
                    self.save()
                if stop:
                    raise StopRequestedError
                if out_of_time:
                    tqdm.write(f"train.time_limit of {run.time_limit} s reached at iteration "
                               f"{iteration}")
                    break
                step_start = time.perf_counter()
        except StopRequestedError:
            self.save()
            if main:
                name = signal.Signals(self._stop_signal or signal.SIGTERM).name
                tqdm.write(f"{name}: checkpoint written at iteration {self.state.iteration} to "
                           f"{self.out / 'last.pt'}; continue with --resume {self.out}")
            raise
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if loader.skipped:
            log.warning("%d unreadable training images were replaced by others; the first: %s",
                        len(loader.skipped), loader.skipped[0])
        results = self._finish(len(loader.skipped)) if main else {}
        self.procs.barrier()
        return results

    def _check_finite(self, stats: dict[str, float], iteration: int) -> bool:
        """True for a finite loss. A non-finite one changed nothing (the step skips the
        update and puts the batch-norm statistics back); after ``train.max_nonfinite`` in a
        row the run goes back to the last sound state (the weights, batch-norm statistics and
        optimiser state from before the loss blew up: see
        :class:`~yolov3.train.step.SoundState`), writes it as ``last.pt`` and stops, so that
        a lower lr can ``--resume`` from it. The iterations since are not repeated."""
        if math.isfinite(stats["total"]):
            self._nonfinite_in_row = 0
            return True
        self._nonfinite_in_row += 1
        log.warning("iteration %d: non-finite loss (%s); the step was skipped", iteration,
                    ", ".join(f"{k}={stats[k]:.4g}" for k in self.step.parts))
        if self._nonfinite_in_row >= self.config.train.max_nonfinite:
            since = self.step.sound_state.calls_since
            if self.step.sound_state.restore() and since is not None:
                state = f"the state from before iteration {iteration - since}"
            else:
                state = "the state it started from (no step was applied)"
            self.save()
            raise YoloError(
                f"{self._nonfinite_in_row} non-finite losses in a row up to iteration "
                f"{iteration}: training diverged. A checkpoint of the last sound state ({state},"
                f" whose loss was finite) was written to {self.out / 'last.pt'}: lower "
                f"optimizer.lr and continue with --resume {self.out} --set optimizer.lr=..., "
                "or check the labels."
            )
        return False

    def _postfix(self, stats: dict[str, float], rate: float, hw: Sequence[int]) -> str:
        parts = " ".join(f"{k} {stats[k]:.3g}" for k in self.step.parts)
        size = f"{hw[1]}" if hw[0] == hw[1] else f"{hw[1]}x{hw[0]}"
        return f"lr {stats['lr']:.2e} {parts} | {size}px {rate:.1f} img/s"

    def _log(self, writer: SummaryWriter, iteration: int, stats: dict[str, float], images: int,
             rate: float) -> None:
        per_image = {k: stats[k] / images for k in (*self.step.parts, "total")}
        for k, v in per_image.items():
            writer.add_scalar(f"loss/{k}", v, iteration)
        writer.add_scalar("lr", stats["lr"], iteration)
        writer.add_scalar("images_per_second", rate, iteration)
        if iteration % self.config.train.log_interval == 0 or iteration == 1:
            self.state.losses.append({"iteration": iteration, **per_image})

    def _evaluate(self, writer: SummaryWriter | None, iteration: int) -> None:
        """COCO evaluation on the validation split by rank 0, the others waiting."""
        if writer is None:
            self.procs.barrier()
            return
        metrics = evaluate(self.detector, self.val_data, img_size=self.config.data.input_hw,
                           device=self.device, batch_size=max(self.minibatch, 8),
                           model_names=self.names, progress=False)
        self.model.train()
        ap, ap50 = float(metrics["AP"]), float(metrics["AP50"])
        writer.add_scalar("val/AP", ap, iteration)
        writer.add_scalar("val/AP50", ap50, iteration)
        self.state.evals.append({"iteration": iteration, "AP": ap, "AP50": ap50})
        tqdm.write(f"iteration {iteration}: val AP {ap:.4f} AP50 {ap50:.4f}")
        if ap50 > self.state.best_ap50:
            self.state.best_ap50, self.state.best_iteration = ap50, iteration
            self.save("best.pt")
        self.procs.barrier()

    # --- the end of a run --------------------------------------------------------------------

    def _finish(self, skipped: int) -> dict[str, Any]:
        save_darknet_weights(self.detector, self.out / "last.weights",
                             seen=self.state.iteration * self.config.optimizer.batch)
        plot_curves(self.state.losses, self.state.evals, self.out / "curves.png")
        self._annotate_val_images()
        final = self.state.evals[-1] if self.state.evals else {}
        best = next((e for e in self.state.evals
                     if e["iteration"] == self.state.best_iteration), {})
        results = {
            "iterations": self.state.iteration,
            "images_seen": self.state.iteration * self.config.optimizer.batch,
            "wall_time_s": round(self.state.wall_time, 1),
            "final": {k: final.get(k) for k in ("AP", "AP50")},
            "best": {"AP": best.get("AP"), "AP50": best.get("AP50"),
                     "iteration": self.state.best_iteration or None},
            "unreadable_images_skipped": skipped,
            "out": str(self.out),
        }
        write_json(self.out / "results.json", results)
        return results

    def _annotate_val_images(self, count: int = 4) -> None:
        folder = self.out / "val_images"
        folder.mkdir(exist_ok=True)
        detector = Detector(self.detector, self.config.data.input_hw, conf_thresh=0.25,
                            device=self.device)
        for i in evenly_spaced(len(self.val_data), count).tolist():
            try:
                sample = self.val_data[i]
            except DataError as exc:
                log.warning("no annotated picture of validation image %d: %s", i, exc)
                continue
            dets = detector.detect([sample.image])[0]
            picture = draw_detections(sample.image, dets, self.names)
            with atomic_write(folder / f"{i:05d}.jpg") as f:
                picture.save(f, format="JPEG", quality=90)
        self.model.train()
