"""The parts a run is wired from: the network to train (with its anchors), the moving average
of its weights, and the training step as the config asks it to run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.optim import Optimizer

from yolov3.anchors import fit_anchors_for_training
from yolov3.configs import BASE_PRESET
from yolov3.datasets.base import DetectionDataset
from yolov3.model.cfg import cfg_anchors, format_anchors, unread_training_keys
from yolov3.model.network import YOLOv3, build_model
from yolov3.train.distributed import Processes
from yolov3.train.ema import EmaConfig, WeightsEMA
from yolov3.train.step import TrainStep, amp_mode

if TYPE_CHECKING:
    from yolov3.train.config import TrainConfig

log = logging.getLogger("yolov3")


def record_paths(config: TrainConfig) -> None:
    """Write the files that the config names (``data.dataset``, ``model.cfg``,
    ``model.weights``) as absolute paths, so that the run's record (its checkpoints and
    ``config.yaml``) means the same files from any working directory; names that are not
    files here (a built-in cfg, official weights) stay as they are."""
    for section, key in ((config.data, "dataset"), (config.model, "cfg"),
                         (config.model, "weights")):
        value = getattr(section, key)
        if value and Path(value).expanduser().exists():
            setattr(section, key, str(Path(value).expanduser().resolve()))


def build_network(config: TrainConfig, train_data: DetectionDataset, device: torch.device,
                  procs: Processes) -> YOLOv3:
    """The network of ``config.model`` for the training data's classes, on ``device``: the
    cfg's anchors, those given, or with ``model.anchors: auto`` as many fitted by k-means to
    the training boxes (YOLOv2's 1 - IoU distance) and recorded in the config, so that a
    resumed run and ``model.cfg`` use the same; the ignore threshold of ``loss``, the
    evaluation input of ``data``; synchronised batch norm and channels-last as ``train``
    asks."""
    model, run = config.model, config.train
    sections = model.sections
    unread = unread_training_keys(sections)
    if unread and procs.is_main:
        log.info("%s: not read: %s; the training recipe is the config's (the %s preset, "
                 "--config and the options)", model.cfg, ", ".join(unread), BASE_PRESET)
    if model.anchors == "auto":
        fitted = fit_anchors_for_training(train_data, len(cfg_anchors(sections)),
                                          config.data.img_size, run.seed)
        model.anchors = format_anchors(fitted)
        if procs.is_main:
            log.info("anchors fitted to the training boxes: %s", model.anchors)
    network = build_model(sections, num_classes=len(train_data.names),
                          anchors=model.anchor_pairs(), input_hw=config.data.input_hw,
                          ignore_thresh=config.loss.ignore_override).to(device)
    if procs.distributed and run.sync_bn:
        network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
    if run.channels_last:
        network.to(memory_format=torch.channels_last)
    return network


def build_ema(model: YOLOv3, config: EmaConfig,
              saved: tuple[dict[str, Tensor], int] | None) -> WeightsEMA | None:
    """The moving average of ``model``'s weights (``ema.decay`` > 0), ``saved`` (a
    checkpoint's average and its update count) when the run is resumed from one."""
    if not config.decay:
        return None
    ema = WeightsEMA(model, config.decay, config.ramp)
    if saved is not None:
        ema.load(*saved)
    return ema


def build_train_step(model: YOLOv3, optimizer: Optimizer, ema: WeightsEMA | None,
                     config: TrainConfig, device: torch.device, procs: Processes) -> TrainStep:
    """The iteration as ``train`` asks it to run: DistributedDataParallel across processes,
    torch.compile, channels-last inputs, mixed precision, the config's loss."""
    run = config.train
    amp = amp_mode(run.amp, str(device))
    if procs.is_main and run.amp == "auto":
        log.info("train.amp auto: %s on %s", amp, device)
    return TrainStep(model, optimizer, amp=amp, channels_last=run.channels_last,
                     compile=run.compile, world_size=procs.world_size,
                     device_ids=[device.index] if device.type == "cuda" else None,
                     loss=config.loss.build(), ema=ema)
