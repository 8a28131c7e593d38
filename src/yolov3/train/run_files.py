"""The files a run leaves for its user besides checkpoints and logs (rank 0 writes them).

At the start: ``config.yaml`` (the resolved configuration: ``yolov3 train --config
RUN/config.yaml`` runs it again), ``model.cfg`` (the network as darknet reads it) and
``labels.png`` (the training boxes); ``train_batch0..2.jpg``, the first minibatches as the
recipe feeds them to the network; at the end ``last.weights`` (darknet), ``curves.png``,
annotated validation pictures in ``val_images/`` and ``results.json``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import yaml

from yolov3.datasets.base import evenly_spaced
from yolov3.errors import DataError
from yolov3.fileio import atomic_write
from yolov3.inference import DetectOptions, Detector
from yolov3.inference.draw import draw_detections
from yolov3.model.cfg import format_cfg
from yolov3.train.hooks import Hook, Minibatch
from yolov3.train.pictures import save_batch_picture, save_label_picture
from yolov3.train.report import plot_curves, write_json
from yolov3.train.run_folder import BATCH_PICTURES
from yolov3.weights.darknet import save_darknet_weights

if TYPE_CHECKING:
    from yolov3.train.trainer import Trainer

log = logging.getLogger("yolov3")

#: How many validation images ``val_images/`` shows with their detections.
VAL_PICTURES = 4


def config_yaml(config: dict[str, Any]) -> str:
    """A resolved configuration as YAML that :func:`~yolov3.train.config.load_config` reads
    back to the same values."""
    return ("# The resolved configuration of this run: yolov3 train --config config.yaml "
            "runs it again.\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def results_summary(trainer: Trainer, skipped: int) -> dict[str, Any]:
    """The run's summary (``results.json``): its length, time, final and best AP, and the
    ``skipped`` unreadable training images."""
    state = trainer.state
    final = state.evals[-1] if state.evals else {}
    best = next((e for e in state.evals if e["iteration"] == state.best_iteration), {})
    return {
        "iterations": state.iteration,
        "images_seen": state.iteration * trainer.config.optimizer.batch,
        "wall_time_s": round(state.wall_time, 1),
        "final": {k: final.get(k) for k in ("AP", "AP50")},
        "best": {"AP": best.get("AP"), "AP50": best.get("AP50"),
                 "iteration": state.best_iteration or None},
        "unreadable_images_skipped": skipped,
        "out": str(trainer.out),
    }


class RunFiles(Hook):
    """Writes the files of the module docstring (install it on rank 0 only)."""

    def before_train(self, trainer: Trainer) -> None:
        out = trainer.out
        with atomic_write(out / "config.yaml") as f:
            f.write(config_yaml(trainer.config.to_dict()).encode())
        with atomic_write(out / "model.cfg") as f:
            f.write(format_cfg(trainer.model.sections).encode())
        if not (out / "labels.png").is_file():
            save_label_picture(*trainer.train_data.training_boxes(), trainer.names,
                               out / "labels.png")

    def before_step(self, trainer: Trainer, iteration: int, minibatches: list[Minibatch]) -> None:
        if iteration <= BATCH_PICTURES:
            save_batch_picture(*minibatches[0], trainer.names,
                               trainer.out / f"train_batch{iteration - 1}.jpg")

    def after_train(self, trainer: Trainer, results: dict[str, Any]) -> None:
        state, out = trainer.state, trainer.out
        save_darknet_weights(trainer.detector, out / "last.weights",
                             seen=state.iteration * trainer.config.optimizer.batch)
        plot_curves(state.losses, state.evals, out / "curves.png")
        self._annotate_val_images(trainer)
        write_json(out / "results.json", results)

    @staticmethod
    def _annotate_val_images(trainer: Trainer) -> None:
        folder = trainer.out / "val_images"
        folder.mkdir(exist_ok=True)
        detector = Detector(trainer.detector, DetectOptions(img_size=trainer.config.data.input_hw),
                            device=trainer.device)
        for i in evenly_spaced(len(trainer.val_data), VAL_PICTURES).tolist():
            try:
                sample = trainer.val_data[i]
            except DataError as exc:
                log.warning("no annotated picture of validation image %d: %s", i, exc)
                continue
            dets = detector.detect([sample.image])[0]
            picture = draw_detections(sample.image, dets, trainer.names)
            with atomic_write(folder / f"{i:05d}.jpg") as f:
                picture.save(f, format="JPEG", quality=90)
        trainer.model.train()
