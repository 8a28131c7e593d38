"""A run's checkpoints: what ``last.pt`` and ``best.pt`` hold, written and restored.

A checkpoint holds the detector (the moving average of the weights when the recipe keeps
one, with the trained weights beside it as ``training_model``), the optimiser state, the
resolved config, the :class:`~yolov3.train.trainer.TrainState` and the RNG state, so that a
resumed run continues bit for bit (see :mod:`yolov3.weights.checkpoint` for the file format).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from yolov3.errors import YoloError
from yolov3.fileio import DiskFullError, format_bytes, free_bytes
from yolov3.train.optim import apply_optimizer_config
from yolov3.weights.checkpoint import load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from torch import Tensor

    from yolov3.train.trainer import Trainer

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
    #: What the run trains on (:func:`dataset_record`), checked when it is resumed.
    dataset: dict[str, Any] = field(default_factory=dict)


def dataset_record(trainer: Trainer) -> dict[str, Any]:
    """What identifies the training data of ``trainer``: its source, image count and classes."""
    data = trainer.train_data
    return {"source": str(data.source), "train_images": len(data), "names": list(trainer.names)}


def save_run(trainer: Trainer, name: str) -> None:
    """Write ``trainer``'s checkpoint ``name`` into its folder. A disk too full for it is a
    :class:`DiskFullError` that names the folder and the room a checkpoint needs; the previous
    file stays as it was."""
    out, state = trainer.out, trainer.state
    averaged = {}
    if trainer.ema is not None:
        trainer.ema.model.seen = trainer.model.seen
        averaged = {"training_model": {k: v.detach().cpu()
                                       for k, v in trainer.model.state_dict().items()},
                    "ema_updates": trainer.ema.updates}
    try:
        save_checkpoint(out / name, trainer.detector, trainer.names, **averaged,
                        optimizer=trainer.optimizer.state_dict(),
                        config=trainer.config.to_dict(), state=state.__dict__,
                        torch_rng=torch.get_rng_state())
    except DiskFullError as exc:
        if not (out / name).is_file():
            kept = f"no earlier {name} exists"
        elif name == "last.pt" and trainer.saved_iteration is not None:
            kept = f"the previous {name} (iteration {trainer.saved_iteration}) is intact"
        else:
            kept = f"the previous {name} is intact"
        raise DiskFullError(exc.path, exc.reason, exc.written, code=exc.errno, message=(
            f"{out}: {exc.reason}: the checkpoint {name} could not be written at iteration "
            f"{state.iteration} (a checkpoint of this run needs at least "
            f"{format_bytes(checkpoint_bytes(trainer))}; {format_bytes(exc.free)} free there); "
            f"{kept}. Free some space there (or copy {out} to a disk with room) and continue "
            "with --resume")) from exc


def restore_run(trainer: Trainer, path: Path) -> tuple[dict[str, Tensor], int] | None:
    """Load ``path`` into ``trainer``'s model, optimiser, state and RNG; returns the moving
    average of the weights it holds and its update count (None without one). What does not
    fit (other classes, another network, other data, a file of another kind) is a
    :class:`YoloError` that says what differs and what to do; a ``best.pt`` that the run's
    record names but the folder lacks is said, and written again at the next evaluation."""
    if not path.is_file():
        raise YoloError(f"--resume: {path} does not exist; nothing to resume")
    payload = load_checkpoint(path)
    missing = [k for k in ("optimizer", "state", "torch_rng") if k not in payload]
    if missing:
        raise YoloError(f"{path}: not a training checkpoint that can be resumed (it has no "
                        f"{', '.join(missing)}): start a new run with --weights {path}")
    fresh = f"start a new run with --weights {path}"
    if list(payload["names"]) != list(trainer.names):
        raise YoloError(f"{path}: the run learned {len(payload['names'])} classes "
                        f"({_listed(payload['names'])}), the data now has "
                        f"{len(trainer.names)} ({_listed(trainer.names)}): resume with the "
                        f"run's data, or {fresh}")
    # With a moving average, "model" is the average (what a detector loads) and the weights
    # that training continues from are "training_model".
    weights = payload.get("training_model", payload["model"])
    difference = _first_difference(weights, trainer.model.state_dict())
    if difference:
        raise YoloError(f"{path}: the run's network is not this config's ({difference}; "
                        f"model.cfg {trainer.config.model.cfg}): resume with the run's cfg, or "
                        f"{fresh}")
    trainer.model.load_state_dict(weights)
    try:
        trainer.optimizer.load_state_dict(payload["optimizer"])
        # The checkpoint brings the saved run's momentum and decay; the config may differ.
        apply_optimizer_config(trainer.optimizer, trainer.model, trainer.config.optimizer)
        trainer.state = TrainState(**payload["state"])
    except (ValueError, TypeError, KeyError) as exc:
        raise YoloError(f"{path}: its optimiser or training state does not fit this run "
                        f"({exc}); {fresh}") from None
    _check_dataset(trainer, path)
    _check_best(trainer, path.parent)
    torch.set_rng_state(payload["torch_rng"])
    log.info("resuming %s at iteration %d", path, trainer.state.iteration)
    return ((payload["model"], int(payload["ema_updates"]))
            if "training_model" in payload else None)


def _listed(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... {len(names) - most} more" if len(names) > most else "")


def _first_difference(saved: dict[str, Tensor], model: dict[str, Tensor]) -> str | None:
    """The first tensor in which two state dicts differ by name or shape, in words."""
    for key in [*model, *saved]:
        if key not in saved:
            return f"{key} is new in this network"
        if key not in model:
            return f"{key} is not in this network"
        if saved[key].shape != model[key].shape:
            return (f"{key} is {tuple(saved[key].shape)} in the checkpoint and "
                    f"{tuple(model[key].shape)} here")
    return None


def _check_dataset(trainer: Trainer, path: Path) -> None:
    """The resumed run trains on the data it started with (its record, when it has one)."""
    was, now = trainer.state.dataset, dataset_record(trainer)
    if was and (was["train_images"], was["names"]) != (now["train_images"], now["names"]):
        raise YoloError(
            f"{path}: the run trained on {was['source']} ({was['train_images']} training "
            f"images), but data.dataset now opens {now['source']} ({now['train_images']}): "
            f"resume from the folder the run started in, or give --data {was['source']}")
    trainer.state.dataset = now


def _check_best(trainer: Trainer, folder: Path) -> None:
    """A ``best.pt`` that the run's record names must be in its folder; when it is not, the
    best is established again by the next evaluations."""
    state = trainer.state
    if state.best_iteration and not (folder / "best.pt").is_file():
        log.warning("%s: best.pt (iteration %d, AP50 %.4f) is missing; the next evaluation "
                    "writes it again", folder, state.best_iteration, state.best_ap50)
        state.best_ap50, state.best_iteration = -1.0, 0


def checkpoint_bytes(trainer: Trainer) -> int:
    """What a checkpoint needs at least: the model's tensors and the optimiser's momentum of
    every trainable parameter (the cfg, the config and the history come on top)."""
    model = trainer.model
    tensors = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    momentum = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return tensors * (1 if trainer.ema is None else 2) + momentum


def check_room(trainer: Trainer) -> None:
    """Refuse to start a run whose folder's disk cannot hold even one checkpoint."""
    needed, free = checkpoint_bytes(trainer), free_bytes(trainer.out)
    if free is not None and free < needed:
        raise YoloError(
            f"{trainer.out}: no space left on the disk for this run: a checkpoint needs at "
            f"least {format_bytes(needed)} and {format_bytes(free)} is free there; free some "
            "space or choose another --out")
