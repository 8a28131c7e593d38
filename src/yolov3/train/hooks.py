"""What the training loop does besides the step: hooks called at fixed points of a run.

The :class:`~yolov3.train.trainer.Trainer` runs the iterations; everything else a run does
is a :class:`Hook`, called in list order at each point:

- ``before_train``: once, before the first iteration (also of a resumed run);
- ``before_step``: before each iteration, with its minibatches;
- ``after_step``: after each iteration, with a :class:`StepInfo`;
- ``after_evaluation``: after each evaluation on the validation split, with its metrics;
- ``after_train``: once, after the last iteration, with the run's results (rank 0 only);
- ``close``: always, when the run ends or fails (release files, writers, signal handlers).

The packaged hooks: :class:`DivergenceGuard`, :class:`StopRules` (time limit, SIGINT and
SIGTERM), :class:`History` (what ``curves.png`` and the checkpoint keep), :class:`Evaluation`,
:class:`Checkpoints` (``last.pt`` and ``best.pt``), :class:`ProgressBar` and the files of
:mod:`yolov3.train.run_files`; the loggers are in :mod:`yolov3.train.loggers`. A user's hook is
any object with some of these methods, given as ``Trainer(..., hooks=[...])``.

Every process of a distributed run calls the hooks that take part in collective operations
(the stop rules, evaluation, checkpoints); the hooks that write or print run on rank 0 alone.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor
from tqdm import tqdm

from yolov3.errors import YoloError
from yolov3.evaluation import evaluate
from yolov3.inference.options import DetectOptions

if TYPE_CHECKING:
    from yolov3.train.trainer import Trainer

log = logging.getLogger("yolov3")

Minibatch = tuple[Tensor, list[Tensor]]


@dataclass(frozen=True)
class StepInfo:
    """One iteration as it ended: ``stats`` holds the lr and each loss part summed over the
    iteration's ``images`` (all processes), and ``total``; ``seconds`` its wall time;
    ``input_hw`` its network input."""

    iteration: int
    stats: dict[str, float]
    images: int
    seconds: float
    input_hw: tuple[int, int]

    @property
    def finite(self) -> bool:
        """False when the loss was not finite (the step changed nothing)."""
        return math.isfinite(self.stats["total"])

    @property
    def rate(self) -> float:
        """Images per second."""
        return self.images / max(self.seconds, 1e-9)

    def per_image(self, parts: Sequence[str]) -> dict[str, float]:
        """The loss ``parts`` and the total, each per image."""
        return {k: self.stats[k] / self.images for k in (*parts, "total")}


class Hook:
    """Does nothing at every point: a hook overrides the points it needs (see the module
    docstring). ``trainer`` gives the run's state: ``trainer.state`` (iteration, history),
    ``trainer.config``, ``trainer.out``, ``trainer.detector``, ``trainer.ending`` (this
    iteration is the run's last) and :meth:`~yolov3.train.trainer.Trainer.finish_early`."""

    def before_train(self, trainer: Trainer) -> None:
        """Once, before the first iteration of this process's run."""

    def before_step(self, trainer: Trainer, iteration: int, minibatches: list[Minibatch]) -> None:
        """Before ``iteration`` runs on ``minibatches`` (on the device)."""

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        """After an iteration (``trainer.state.iteration`` is ``step.iteration``)."""

    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        """After the validation split was evaluated at ``iteration`` (``AP``, ``AP50``)."""

    def after_train(self, trainer: Trainer, results: dict[str, Any]) -> None:
        """After the last iteration, on rank 0, with the results summary."""

    def close(self, trainer: Trainer) -> None:
        """When the run ends, however it ends."""


def call(hooks: Sequence[Any], point: str, *args: Any) -> None:
    """Call ``point`` of every hook that has it, in order."""
    for hook in hooks:
        method = getattr(hook, point, None)
        if method is not None:
            method(*args)


class DivergenceGuard(Hook):
    """A non-finite loss changed nothing (the step skips the update and puts the batch-norm
    statistics back); after ``train.max_nonfinite`` in a row the run goes back to the last sound
    state (the weights, batch-norm statistics and optimiser state from before the loss blew
    up: see :class:`~yolov3.train.step.SoundState`), writes it as ``last.pt`` and stops, so
    that a lower lr can ``--resume`` from it. The iterations since are not repeated."""

    def __init__(self) -> None:
        self.in_row = 0

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        if step.finite:
            self.in_row = 0
            return
        self.in_row += 1
        stats = step.stats
        log.warning("iteration %d: non-finite loss (%s); the step was skipped", step.iteration,
                    ", ".join(f"{k}={stats[k]:.4g}" for k in trainer.step.parts))
        if self.in_row < trainer.config.train.max_nonfinite:
            return
        sound = trainer.step.sound_state
        since = sound.calls_since
        if sound.restore() and since is not None:
            state = f"the state from before iteration {step.iteration - since}"
        else:
            state = "the state it started from (no step was applied)"
        trainer.save()
        raise YoloError(
            f"{self.in_row} non-finite losses in a row up to iteration {step.iteration}: "
            f"training diverged. A checkpoint of the last sound state ({state}, whose loss was "
            f"finite) was written to {trainer.out / 'last.pt'}: lower optimizer.lr and "
            f"continue with --resume {trainer.out} --set optimizer.lr=..., or check the labels.")


class StopRules(Hook):
    """``train.time_limit`` (seconds of this session's iterations, as
    :attr:`~yolov3.train.trainer.Trainer.session_start` counts them) ends the run as if at its last
    iteration; SIGINT or SIGTERM interrupts it after the iteration in flight, with a
    checkpoint (see :attr:`~yolov3.train.trainer.Trainer.interrupted`). Every process learns
    of a stop that one of them saw, at the same iteration."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def before_train(self, trainer: Trainer) -> None:
        self.previous = {s: signal.signal(s, self._on_signal)
                         for s in (signal.SIGINT, signal.SIGTERM)}

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        limit, procs = trainer.config.train.time_limit, trainer.procs
        late = bool(limit) and time.perf_counter() - trainer.session_start > limit
        if procs.any(late, trainer.device):
            trainer.finish_early(f"train.time_limit of {limit} s reached at iteration "
                                 f"{step.iteration}")
        if procs.any(self.signal is not None, trainer.device):
            trainer.interrupted = signal.Signals(self.signal or signal.SIGTERM).name

    def close(self, trainer: Trainer) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}


class History(Hook):
    """What the checkpoint keeps of the run's course (and ``curves.png`` draws): the loss per
    image every ``train.log_interval`` iterations and the first, and every evaluation."""

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        every = trainer.config.train.log_interval
        if step.finite and (step.iteration % every == 0 or step.iteration == 1):
            trainer.state.losses.append({"iteration": step.iteration,
                                         **step.per_image(trainer.step.parts)})

    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        trainer.state.evals.append({"iteration": iteration, **metrics})


class Evaluation(Hook):
    """COCO evaluation of the detector on the validation split every ``train.eval_interval``
    iterations and at the last, by rank 0, the other processes waiting; then every hook's
    ``after_evaluation``. A validation split without boxes is not evaluated. An evaluation
    that fails never costs the training: it is reported, ``last.pt`` is written, and the run
    goes on (without that evaluation's AP)."""

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        every = trainer.config.train.eval_interval
        if not (every and trainer.val_boxes and (step.iteration % every == 0 or trainer.ending)):
            return
        if trainer.procs.is_main:
            try:
                options = DetectOptions.for_evaluation(img_size=trainer.config.data.input_hw)
                metrics = evaluate(trainer.detector, trainer.val_data, options,
                                   device=trainer.device, batch_size=max(trainer.minibatch, 8),
                                   model_names=trainer.names, progress=False)
            except Exception as exc:
                trainer.model.train()
                trainer.save()
                log.error("iteration %d: the evaluation failed (%s: %s); last.pt is written and "
                          "training goes on without this evaluation", step.iteration,
                          type(exc).__name__, exc)
                trainer.procs.barrier()
                return
            trainer.model.train()
            found = {"AP": float(metrics["AP"]), "AP50": float(metrics["AP50"])}
            tqdm.write(f"iteration {step.iteration}: val AP {found['AP']:.4f} "
                       f"AP50 {found['AP50']:.4f}")
            call(trainer.hooks, "after_evaluation", trainer, step.iteration, found)
        trainer.procs.barrier()


class Checkpoints(Hook):
    """``last.pt`` every ``train.checkpoint_interval`` iterations, at the last and when the
    run is interrupted; ``best.pt`` at each evaluation whose AP50 beats the best so far."""

    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        state = trainer.state
        if metrics["AP50"] > state.best_ap50:
            state.best_ap50, state.best_iteration = metrics["AP50"], iteration
            trainer.save("best.pt")

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        every = trainer.config.train.checkpoint_interval
        if trainer.ending or trainer.interrupted or (every and step.iteration % every == 0):
            trainer.save()


class ProgressBar(Hook):
    """The progress bar: iterations, the lr, the loss parts, the input size and images/s; and
    after :data:`ETA_AFTER` iterations, when the run will end at their pace (the first
    iteration, which warms up, left out; evaluations not counted)."""

    #: Iterations of this session after which the end time is estimated.
    ETA_AFTER = 10

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.first = 0
        self.seconds = 0.0

    def before_train(self, trainer: Trainer) -> None:
        self.first = trainer.state.iteration + 1
        self.bar = tqdm(total=trainer.config.schedule.max_iter, initial=trainer.state.iteration,
                        unit="it", desc="train", dynamic_ncols=True)

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        assert self.bar is not None
        if step.iteration > self.first:
            self.seconds += step.seconds
        left = trainer.config.schedule.max_iter - step.iteration
        if step.iteration == self.first + self.ETA_AFTER and left > 0:
            pace = self.seconds / self.ETA_AFTER
            end = time.strftime("%Y-%m-%d %H:%M", time.localtime(time.time() + left * pace))
            tqdm.write(f"{pace:.2f} s an iteration: the run ends at about {end} "
                       f"(in {left * pace / 3600:.1f} h, evaluations not counted)")
        stats, (h, w) = step.stats, step.input_hw
        parts = " ".join(f"{k} {stats[k]:.3g}" for k in trainer.step.parts)
        size = f"{w}" if h == w else f"{w}x{h}"
        self.bar.update(1)
        self.bar.set_postfix_str(f"lr {stats['lr']:.2e} {parts} | {size}px "
                                 f"{step.rate:.1f} img/s")

    def close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
