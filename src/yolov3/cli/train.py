"""``yolov3 train``: darknet's recipe on COCO, fine-tuning on your data, or the built-in demo."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from yolov3.checks import check_img_size
from yolov3.cli.common import img_size, workers
from yolov3.configs import packaged_presets
from yolov3.errors import YoloError

#: Where a run goes without --out: this folder, else the first of runs/train2, runs/train3, ...
#: that holds no run.
DEFAULT_OUT = "runs/train"

# Command-line options that are shorthands for config keys.
SHORTHANDS = {
    "data": "data.dataset",
    "model": "model.cfg",
    "weights": "model.weights",
    "anchors": "model.anchors",
    "batch_size": "optimizer.batch",
    "subdivisions": "optimizer.subdivisions",
    "epochs": "schedule.epochs",
    "max_iter": "schedule.max_iter",
    "workers": "train.workers",
    "device": "train.device",
    "eval_interval": "train.eval_interval",
    "seed": "train.seed",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a detector with darknet's recipe",
        description="Train YOLOv3. Values come from the packaged darknet COCO preset, then "
        "--config FILE, then the options below, then --set KEY=VALUE (later wins). Without "
        "--data the built-in generated demo dataset is used.",
    )
    p.add_argument("--config", metavar="FILE",
                   help="training config YAML: a file, or a packaged config ("
                   f"{', '.join(packaged_presets())})")
    p.add_argument("--data", metavar="DATASET",
                   help="dataset YAML, COCO JSON, VOC folder or darknet .data (data.dataset)")
    p.add_argument("--model", metavar="NAME|CFG", help="architecture (model.cfg)")
    p.add_argument("--weights", metavar="NAME|FILE",
                   help="initial weights: 'backbone' (the default: the model's official "
                   "backbone, darknet53.conv.74 for yolov3 and yolov3-spp, yolov3-tiny.conv.15 "
                   "for yolov3-tiny; a custom cfg that starts otherwise trains from scratch), "
                   "an official name, .weights, checkpoint, or 'none' (model.weights)")
    p.add_argument("--anchors", metavar="auto|W,H,...",
                   help="'auto' fits anchors to the training boxes by k-means (written into the "
                   "run's model.cfg); or a list w,h, w,h, ... (model.anchors)")
    p.add_argument("--img-size", type=img_size, metavar="SIZE|WxH",
                   help="evaluation input size: one side (data.img_size), or width x height, "
                   "e.g. 384x256, the longer side and width / height (data.img_size and "
                   "data.aspect: training draws its sizes at that aspect too)")
    p.add_argument("--batch-size", type=int,
                   help="images per optimiser step, darknet's batch (optimizer.batch)")
    p.add_argument("--subdivisions", type=int,
                   help="minibatches accumulated per step (optimizer.subdivisions)")
    p.add_argument("--epochs", type=float,
                   help="passes over the training images; the run's length then follows the "
                   "dataset, within schedule.min_iter..max_iter (schedule.epochs)")
    p.add_argument("--max-iter", type=int,
                   help="iterations to train, or with --epochs the most (schedule.max_iter)")
    p.add_argument("--workers", type=workers, metavar="auto|N",
                   help="data-loader processes; auto: one per core, but one (train.workers)")
    p.add_argument("--device", help="auto (the GPU when there is one), cpu, cuda or cuda:N "
                   "(train.device)")
    p.add_argument("--eval-interval", type=int,
                   help="evaluate every N iterations, 0 for never (train.eval_interval)")
    p.add_argument("--seed", type=int, help="seed of data order and augmentation (train.seed)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config value, e.g. --set optimizer.lr=0.0005 "
                   "--set schedule.steps=[800,900]; repeatable")
    p.add_argument("--out", metavar="DIR",
                   help=f"the run's folder (default: {DEFAULT_OUT}, or the first of "
                   f"{DEFAULT_OUT}2, {DEFAULT_OUT}3, ... that holds no run). A folder that holds "
                   "another run (last.pt, best.pt, results.json, model.cfg, ...) is refused: "
                   "continue that run with --resume DIR, or replace it with --overwrite. A "
                   "folder that a live run writes into is refused (its lock file)")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace the run that --out (default {DEFAULT_OUT}) holds: its files "
                   "(last.pt, best.pt, "
                   "results.json, model.cfg, last.weights, curves.png, tensorboard/, "
                   "val_images/) are deleted first")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last.pt (its config, changed by "
                   "--config FILE and the options given here)")
    p.set_defaults(run=run)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """The options given on the command line as ``key=value`` config overrides, in order.

    A text option is quoted, so that it stays the text given (the override's value is read as
    YAML, which would make ``--data 2024-05-01`` a date and ``--data on`` a boolean); only
    ``--weights none`` means null."""
    out = img_size_overrides(args.img_size)
    for option, key in SHORTHANDS.items():
        value = getattr(args, option)
        if value is None:
            continue
        if option == "weights" and value.lower() == "none":
            text = "null"
        elif isinstance(value, str):
            text = yaml.safe_dump(value, default_style='"', width=math.inf,
                                  allow_unicode=True).rstrip("\n")
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out + list(args.set)


def img_size_overrides(size: int | tuple[int, int] | None) -> list[str]:
    """--img-size as config overrides: a side is ``data.img_size`` (checked with the config);
    a (height, width) is its longer side and ``data.aspect`` = width / height, which make that
    input exactly (see :func:`~yolov3.inputs.loader.input_shape`); its sides are checked here
    (:func:`~yolov3.cli.common.check_img_size`), as the aspect would round away a side that
    is not a multiple of 32."""
    if size is None:
        return []
    if isinstance(size, int):
        return [f"data.img_size={size}"]
    height, width = check_img_size(size)
    return [f"data.img_size={max(size)}", f"data.aspect={width / height!r}"]


def run(args: argparse.Namespace) -> int:
    from yolov3.train.config import load_config
    from yolov3.train.distributed import stop_processes
    from yolov3.train.trainer import StopRequestedError, Trainer
    from yolov3.weights.checkpoint import load_checkpoint

    overrides = overrides_from_args(args)
    if args.resume:
        out = Path(args.resume)
        if args.overwrite:
            raise YoloError(f"--resume {out} continues that run; --overwrite would delete it: "
                            "give one of them")
        if args.out is not None and Path(args.out).resolve() != out.resolve():
            raise YoloError(f"--resume {out} continues the run in its own folder; leave out "
                            f"--out {args.out} (copy the folder first to continue elsewhere)")
        last = out / "last.pt"
        if not last.is_file():
            raise YoloError(f"--resume {out}: no last.pt there to resume from")
        payload = load_checkpoint(last, keys=("config", "optimizer", "state"))
        config = load_config(args.config, overrides, saved=(payload["config"], str(last)))
    else:
        out = Path(args.out or DEFAULT_OUT)
        config = load_config(args.config, overrides)
    try:
        trainer = Trainer(config, out, resume=bool(args.resume), overwrite=args.overwrite,
                          next_free=not (args.resume or args.out or args.overwrite),
                          inputs={"--config": args.config})
        results = trainer.train()
    except StopRequestedError:
        return 130
    finally:
        # torchrun's process group ends with the command: one left to the interpreter's exit
        # has gloo's threads torn down under it (now and then an abort after a good run)
        stop_processes()
    print(json.dumps(results, indent=2))
    return 0
