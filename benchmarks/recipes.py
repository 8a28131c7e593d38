"""Which recipe switches help fine-tuning on small data: the darknet fine-tuning recipe, then
each switch added alone, then the `finetune` preset (the switches chosen together), at the
same CPU-time budget and over several seeds, in one table (AP50, AP on the held-out split,
minutes of training).

    .venv/bin/python benchmarks/recipes.py ../shared/datasets/kangaroo [--seeds 0 1]
        [--max-iter N] [--only darknet ema giou ...] [--out runs/recipes]
        [--define NAME KEY=VALUE ...]   # a row of your own (repeatable), e.g. --define
                                        # giou1 loss.box=giou loss.box_gain=1
        [--define-on finetune]          # the --define rows as overrides of the finetune
                                        # preset instead (to try a switch on the chosen ones)
        [--folds K]                     # K-fold cross-validation instead of the dataset's split

Every run starts from the official yolov3-tiny (the recipe's `model.weights`) with the
`finetune-darknet` preset; a switch is a list of `--set` overrides on it. Each preset runs its
own iterations: darknet's fine-tuning recipe and its switches 300, `finetune` 230 (larger
inputs, about the same minutes). ``--max-iter`` gives every row one budget instead, moving each
preset's lr steps and burn-in in proportion. Evaluation runs once, at the end, for every row.
Minutes are wall-clock on this machine: run it alone.

With ``--folds K`` every row trains K times (per seed), each time holding out another K-th of
all the dataset's images (the dataset converted once to YOLO txt, images linked, under
``--out``; the parts cut from one fixed shuffle of the file names), so that a row's mean is
measured on every image rather than on one small held-out split: on kangaroo's 36 held-out
photos one seed to the next moves AP50 by 0.02-0.05.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from yolov3.cli.main import configure_logging
from yolov3.configs import preset_path
from yolov3.datasets.convert import convert
from yolov3.images import list_images
from yolov3.train.config import load_config
from yolov3.train.trainer import Trainer

#: The switches, each as overrides of the `finetune-darknet` preset.
SWITCHES: dict[str, list[str]] = {
    "ema": ["ema.decay=0.98", "ema.ramp=20"],
    "giou": ["loss.box=giou", "loss.box_gain=1"],
    "ciou": ["loss.box=ciou", "loss.box_gain=1"],
    "assign-iou": ["loss.assign=iou", "loss.assign_threshold=0.2"],
    "obj-iou": ["loss.obj_target=iou"],
    "ignore-0.5": ["loss.ignore_thresh=0.5"],
    "smoothing": ["loss.label_smoothing=0.1"],
    "mosaic": ["augment.mosaic=0.5"],
    "mixup": ["augment.mixup=0.3"],
    "scale": ["augment.scale=0.3"],
    "cosine": ["schedule.policy=cosine", "schedule.burn_in_power=1", "schedule.final_lr=0.05"],
    "nesterov": ["optimizer.nesterov=true"],
    "adamw": ["optimizer.name=adamw", "optimizer.lr=0.001"],
}
BASE, CHOSEN = "finetune-darknet", "finetune"


def budget(preset: str, max_iter: int | None) -> list[str]:
    """Overrides that run ``preset`` for its own length (None: its ``schedule.max_iter``, or
    its epochs rule on this dataset) or for ``max_iter`` iterations, with one evaluation and
    one checkpoint, at the end (alike for every row). With ``max_iter``, lr steps and burn-in
    given as fractions of the run stay fractions; those given as iterations are scaled from
    the preset's own ``schedule.max_iter``."""
    at_end = ["train.eval_interval=1000000000", "train.checkpoint_interval=0"]
    if max_iter is None:
        return at_end
    own = load_config(preset).schedule
    k = max_iter / own.max_iter

    def scaled(value: float) -> float:
        return value if value < 1 else max(1, round(value * k))

    steps = ",".join(str(scaled(s)) for s in own.steps)
    return ["schedule.epochs=null", "schedule.min_iter=0", f"schedule.max_iter={max_iter}",
            f"schedule.steps=[{steps}]", f"schedule.burn_in={scaled(own.burn_in)}", *at_end]


def folds(data: str, k: int, out: Path) -> list[str]:
    """``k`` dataset YAMLs that hold out each image of ``data`` once: the dataset converted to
    YOLO txt under ``out/folds`` (images linked; kept for the next call with the same
    ``data``), its images in one fixed shuffled order, fold ``f`` holding out every ``k``-th
    image from the ``f``-th."""
    root, source = out / "folds", str(Path(data).resolve())
    marker = root / "source.txt"
    if marker.is_file() and marker.read_text() != source:
        raise SystemExit(f"{root} holds the folds of {marker.read_text()}, not of {source}: "
                         "give another --out")
    if not marker.is_file():
        skipped = sum(len(ds.problems) for ds in convert(data, "yolo", root,
                                                         symlink=True).values())
        if skipped:
            print(f"{skipped} images of {data} were left out of the folds (yolov3 data check "
                  "says why)")
        marker.write_text(source)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    images = [p.relative_to(root).as_posix() for p in list_images(root / "images")]
    if len(images) < k:
        raise SystemExit(f"{data} has {len(images)} images: too few for {k} folds")
    order = np.random.default_rng(0).permutation(len(images))
    files = []
    for f in range(k):
        held = {int(i) for i in order[f::k]}
        for split, keep in (("train", False), ("val", True)):
            (root / f"fold{f}-{split}.txt").write_text(
                "".join(f"{image}\n" for i, image in enumerate(images) if (i in held) == keep))
        spec = {"path": ".", "train": f"fold{f}-train.txt", "val": f"fold{f}-val.txt",
                "names": names}
        (root / f"fold{f}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        files.append(str(root / f"fold{f}.yaml"))
    return files


def run(name: str, preset: str, overrides: list[str], data: str, seed: int,
        max_iter: int | None, out: Path) -> dict[str, float]:
    """One training run; its final AP50, AP and minutes."""
    config = load_config(preset, [f"data.dataset={data}", f"train.seed={seed}",
                                  *budget(preset, max_iter), *overrides])
    start = time.perf_counter()
    results = Trainer(config, out / f"{name}-seed{seed}", overwrite=True).train()
    minutes = (time.perf_counter() - start) / 60
    final = results["final"]
    print(f"  {name} seed {seed}: AP50 {final['AP50']:.3f} AP {final['AP']:.3f} "
          f"{minutes:.1f} min", flush=True)
    return {"AP50": final["AP50"], "AP": final["AP"], "minutes": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="a dataset as --data takes it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-iter", type=int, default=None,
                        help="iterations of every row (default: each preset's own length on "
                        "this dataset: its schedule.epochs rule within min_iter..max_iter)")
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["darknet", *SWITCHES, "chosen"],
                        help="the rows to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--define", nargs="+", action="append", default=[],
                        metavar=("NAME", "KEY=VALUE"),
                        help="one more row: its name and its overrides of --define-on")
    parser.add_argument("--define-on", choices=[BASE, CHOSEN], default=BASE,
                        help=f"the preset that --define rows override (default: {BASE})")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="K-fold cross-validation over all the dataset's images instead of "
                             "its own split (default: its split)")
    args = parser.parse_args()
    configure_logging(debug=False)  # each run's device, data and schedule lines, as `train`'s
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds takes at least 2 (or 0: the dataset's own split)")
    if not preset_path(CHOSEN).is_file():
        raise SystemExit(f"no packaged preset {CHOSEN}")
    rows = {"darknet": (BASE, []), **{k: (BASE, v) for k, v in SWITCHES.items()},
            "chosen": (CHOSEN, []), **{d[0]: (args.define_on, d[1:]) for d in args.define}}
    datasets = folds(args.data, args.folds, args.out) if args.folds else [args.data]
    table = []
    extra = {d[0] for d in args.define}
    for name, (preset, overrides) in rows.items():
        if args.only is not None and name not in args.only and name not in extra:
            continue
        runs = [run(f"{name}-fold{f}" if args.folds else name, preset, overrides, data, s,
                    args.max_iter, args.out)
                for f, data in enumerate(datasets) for s in args.seeds]
        table.append((name, {k: statistics.mean(r[k] for r in runs) for k in runs[0]},
                      [r["AP50"] for r in runs]))
    held_out = f"{args.folds} folds, " if args.folds else ""
    budget_text = ("each preset's own iterations" if args.max_iter is None
                   else f"{args.max_iter} iterations")
    print(f"\n{args.data}, {held_out}{budget_text}, seeds {args.seeds} (means)")
    per = "AP50 per fold and seed" if args.folds else "AP50 per seed"
    print(f"| recipe | AP50 | AP | {per} | minutes |\n| --- | --- | --- | --- | --- |")
    for name, mean, per_seed in table:
        print(f"| {name} | {mean['AP50']:.3f} | {mean['AP']:.3f} | "
              f"{' / '.join(f'{v:.3f}' for v in per_seed)} | {mean['minutes']:.1f} |")


if __name__ == "__main__":
    main()
