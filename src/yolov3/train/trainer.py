"""The training loop: darknet's recipe, checkpoints, evaluation and what the user sees.

One iteration is one optimiser step of ``optimizer.batch`` images, taken as ``subdivisions``
minibatches whose gradients add up (darknet's loss is a sum). Everything that decides the
course of a run (the learning rate, the data order, the input sizes and the augmentation) is a
pure function of the iteration and the seed, so a run resumed from a checkpoint continues
exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from yolov3.anchors import fit_anchors_for_training
from yolov3.devices import parse_device
from yolov3.errors import DataError, YoloError
from yolov3.evaluation import evaluate
from yolov3.fileio import atomic_write
from yolov3.inference import Detector
from yolov3.inference.draw import draw_detections
from yolov3.inputs.loader import TrainLoader, make_train_loader
from yolov3.loss import PARTS
from yolov3.model.cfg import (
    Anchors,
    cfg_anchors,
    format_anchors,
    format_cfg,
    load_cfg,
    unread_training_keys,
)
from yolov3.model.network import build_model
from yolov3.train.config import BASE_PRESET, TrainConfig
from yolov3.train.datasets import open_training_data
from yolov3.train.distributed import minibatch_per_process, start_processes
from yolov3.train.optim import apply_optimizer_config, build_optimizer, learning_rate
from yolov3.train.report import plot_curves, write_json
from yolov3.train.step import TrainStep
from yolov3.weights.checkpoint import load_checkpoint, save_checkpoint
from yolov3.weights.darknet import save_darknet_weights
from yolov3.weights.load import load_pretrained

log = logging.getLogger("yolov3")


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

    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = False) -> None:
        self.config, self.out = config, Path(out)
        run = config.train
        self.procs, self.device = start_processes(parse_device(run.device, "train.device"))
        self.minibatch = minibatch_per_process(
            config.optimizer.batch, config.optimizer.subdivisions, self.procs.world_size)
        torch.manual_seed(run.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = run.cudnn_benchmark
        self.train_data, self.val_data = open_training_data(config)
        for split in (self.train_data, self.val_data):
            if split.problems and self.procs.is_main:
                log.warning("%s split: %s", split.split, split.problems.summary())
        self.names = list(self.train_data.names)
        unread = unread_training_keys(load_cfg(config.model.cfg))
        if unread and self.procs.is_main:
            log.info("%s: not read: %s; the training recipe is the config's (the %s preset, "
                     "--config and the options)", config.model.cfg, ", ".join(unread),
                     BASE_PRESET)
        self.model = build_model(config.model.cfg, num_classes=len(self.names),
                                 anchors=self._anchors()).to(self.device)
        if self.procs.distributed and run.sync_bn:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        if run.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, config.optimizer)
        self.state = TrainState()
        if resume:
            self._restore(self.out / "last.pt")
        elif config.model.weights:
            message = load_pretrained(self.model, config.model.weights)
            if self.procs.is_main:
                log.info("%s", message)
        self.model.freeze(config.model.freeze)
        self.step = self._train_step()
        self._stop_signal: int | None = None
        self._nonfinite_in_row = 0

    def _anchors(self) -> Anchors | None:
        """``model.anchors``: None keeps the cfg's; ``auto`` fits as many by k-means on the
        training boxes (YOLOv2's 1 - IoU distance) and records them in the config, so that a
        resumed run and ``model.cfg`` use the same; else the pairs given."""
        model = self.config.model
        if model.anchors == "auto":
            count = len(cfg_anchors(load_cfg(model.cfg)))
            fitted = fit_anchors_for_training(self.train_data, count, self.config.data.img_size,
                                              self.config.train.seed)
            model.anchors = format_anchors(fitted)
            if self.procs.is_main:
                log.info("anchors fitted to the training boxes: %s", model.anchors)
        return model.anchor_pairs()

    def _train_step(self) -> TrainStep:
        """The iteration as ``train`` asks it to run: DistributedDataParallel across processes,
        torch.compile, channels-last inputs, mixed precision."""
        run = self.config.train
        return TrainStep(
            self.model, self.optimizer, amp=run.amp, channels_last=run.channels_last,
            compile=run.compile, world_size=self.procs.world_size,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
        )

    # --- checkpoints -------------------------------------------------------------------------

    def _restore(self, path: Path) -> None:
        if not path.is_file():
            raise YoloError(f"--resume: {path} does not exist; nothing to resume")
        payload = load_checkpoint(path)
        try:
            self.model.load_state_dict(payload["model"])
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
        """Write a checkpoint (rank 0 only; the others hold the same weights)."""
        if not self.procs.is_main:
            return
        save_checkpoint(
            self.out / name, self.model, self.names,
            optimizer=self.optimizer.state_dict(),
            config=self.config.to_dict(),
            state=self.state.__dict__,
            torch_rng=torch.get_rng_state(),
        )

    # --- the loop ----------------------------------------------------------------------------

    def _loader(self) -> TrainLoader:
        """The training data from the current iteration on (darknet's augmentation and
        multi-scale inputs)."""
        cfg = self.config
        return make_train_loader(
            self.train_data, self.minibatch * self.procs.world_size,
            transform=cfg.augment.build(cfg.data.max_labels),
            multiscale=cfg.multiscale.build(cfg.data.img_size),
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
        summary that rank 0 also writes to ``results.json``."""
        cfg, run, main = self.config, self.config.train, self.procs.is_main
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "model.cfg").write_text(format_cfg(self.model.sections))
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
                stats = self.step(minibatches, learning_rate(iteration, cfg))
                now = time.perf_counter()
                self.state.iteration = iteration
                self.state.wall_time = start_wall + now - start_time
                images = sum(len(m[0]) for m in minibatches) * self.procs.world_size
                rate = images / max(now - step_start, 1e-9)
                if self._check_finite(stats, iteration) and writer is not None:
                    self._log(writer, iteration, stats, images, rate)
                bar.update(1)
                bar.set_postfix_str(self._postfix(stats, rate, minibatches[0][0].shape[-1]))
                out_of_time = self.procs.any(
                    bool(run.time_limit) and now - start_time > run.time_limit, self.device)
                stop = self.procs.any(self._stop_signal is not None, self.device)
                last = iteration == cfg.schedule.max_iter or out_of_time
                if run.eval_interval and (iteration % run.eval_interval == 0 or last):
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
        """True for a finite loss. A non-finite one was not applied (the step skips
        the step); after ``train.max_nonfinite`` in a row the run stops with a checkpoint."""
        if math.isfinite(stats["total"]):
            self._nonfinite_in_row = 0
            return True
        self._nonfinite_in_row += 1
        log.warning("iteration %d: non-finite loss (%s); the step was skipped", iteration,
                    ", ".join(f"{k}={stats[k]:.4g}" for k in PARTS))
        if self._nonfinite_in_row >= self.config.train.max_nonfinite:
            self.save()
            raise YoloError(
                f"{self._nonfinite_in_row} non-finite losses in a row up to iteration "
                f"{iteration}: training diverged. A checkpoint was written to "
                f"{self.out / 'last.pt'}; lower optimizer.lr or check the labels."
            )
        return False

    def _postfix(self, stats: dict[str, float], rate: float, size: int) -> str:
        parts = " ".join(f"{k} {stats[k]:.3g}" for k in PARTS)
        return f"lr {stats['lr']:.2e} {parts} | {size}px {rate:.1f} img/s"

    def _log(self, writer: SummaryWriter, iteration: int, stats: dict[str, float], images: int,
             rate: float) -> None:
        per_image = {k: stats[k] / images for k in (*PARTS, "total")}
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
        metrics = evaluate(self.model, self.val_data, img_size=self.config.data.img_size,
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
        save_darknet_weights(self.model, self.out / "last.weights",
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
        detector = Detector(self.model, self.config.data.img_size, conf_thresh=0.25,
                            device=self.device)
        picks = np.linspace(0, len(self.val_data) - 1, min(count, len(self.val_data)))
        for i in sorted({round(float(p)) for p in picks}):
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
