"""Which recipe switches help fine-tuning on small data: the darknet fine-tuning recipe, then
each switch added alone, then the `finetune` preset (the switches chosen together), at the
same iteration budget and over several seeds, in one table (AP50, AP on the held-out split,
minutes of training).

    .venv/bin/python benchmarks/recipes.py ../shared/datasets/kangaroo [--seeds 0 1]
        [--max-iter 300] [--only darknet ema giou ...] [--out runs/recipes]
        [--define NAME KEY=VALUE ...]   # a row of your own (repeatable), e.g. --define
                                        # giou1 loss.box=giou loss.box_gain=1
        [--define-on finetune]          # the --define rows as overrides of the finetune
                                        # preset instead (to try a switch on the chosen ones)

Every run starts from the official yolov3-tiny (the recipe's `model.weights`) with the
`finetune-darknet` preset; a switch is a list of `--set` overrides on it. A budget other than
the recipe's 300 iterations moves the lr steps and the burn-in in proportion. Evaluation runs
once, at the end. Minutes are wall-clock on this machine: run it alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from yolov3.train.config import load_config, preset_path
from yolov3.train.trainer import Trainer

#: The switches, each as overrides of the `finetune-darknet` preset.
SWITCHES: dict[str, list[str]] = {
    "ema": ["ema.decay=0.98", "ema.ramp=20"],
    "giou": ["loss.box=giou", "loss.box_gain=1"],
    "ciou": ["loss.box=ciou", "loss.box_gain=1"],
    "assign-iou": ["loss.assign=iou", "loss.assign_threshold=0.2"],
    "obj-iou": ["loss.obj_target=iou"],
    "smoothing": ["loss.label_smoothing=0.1"],
    "mosaic": ["augment.mosaic=0.5"],
    "mixup": ["augment.mixup=0.3"],
    "scale": ["augment.scale=0.3"],
    "cosine": ["schedule.policy=cosine", "schedule.burn_in_power=1", "schedule.final_lr=0.05"],
    "nesterov": ["optimizer.nesterov=true"],
    "adamw": ["optimizer.name=adamw", "optimizer.lr=0.001"],
}
BASE, CHOSEN = "finetune-darknet", "finetune"
RECIPE_ITERATIONS = 300


def budget(max_iter: int) -> list[str]:
    """Overrides that run the recipes for ``max_iter`` iterations with one evaluation at the
    end; the step schedule and burn-in scaled from the recipe's 300 iterations."""
    base = load_config(BASE).schedule
    k = max_iter / RECIPE_ITERATIONS
    steps = [max(1, round(s * k)) for s in base.steps]
    return [f"schedule.max_iter={max_iter}", f"schedule.steps=[{','.join(map(str, steps))}]",
            f"schedule.burn_in={max(1, round(base.burn_in * k))}",
            f"train.eval_interval={max_iter}", f"train.checkpoint_interval={max_iter}"]


def run(name: str, preset: str, overrides: list[str], data: str, seed: int, max_iter: int,
        out: Path) -> dict[str, float]:
    """One training run; its final AP50, AP and minutes."""
    extra = budget(max_iter) if preset == BASE else [f"schedule.max_iter={max_iter}"]
    config = load_config(preset, [f"data.dataset={data}", f"train.seed={seed}", *extra,
                                  *overrides])
    if preset == CHOSEN and max_iter != RECIPE_ITERATIONS:
        scaled = load_config(preset, budget(max_iter))
        config.schedule.steps, config.schedule.burn_in = (scaled.schedule.steps,
                                                          scaled.schedule.burn_in)
        config.train.eval_interval = max_iter
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
    parser.add_argument("--max-iter", type=int, default=RECIPE_ITERATIONS)
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["darknet", *SWITCHES, "chosen"],
                        help="the rows to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--define", nargs="+", action="append", default=[],
                        metavar=("NAME", "KEY=VALUE"),
                        help="one more row: its name and its overrides of --define-on")
    parser.add_argument("--define-on", choices=[BASE, CHOSEN], default=BASE,
                        help=f"the preset that --define rows override (default: {BASE})")
    args = parser.parse_args()
    if not preset_path(CHOSEN).is_file():
        raise SystemExit(f"no packaged preset {CHOSEN}")
    rows = {"darknet": (BASE, []), **{k: (BASE, v) for k, v in SWITCHES.items()},
            "chosen": (CHOSEN, []), **{d[0]: (args.define_on, d[1:]) for d in args.define}}
    table = []
    extra = {d[0] for d in args.define}
    for name, (preset, overrides) in rows.items():
        if args.only is not None and name not in args.only and name not in extra:
            continue
        runs = [run(name, preset, overrides, args.data, s, args.max_iter, args.out)
                for s in args.seeds]
        table.append((name, {k: statistics.mean(r[k] for r in runs) for k in runs[0]},
                      [r["AP50"] for r in runs]))
    print(f"\n{args.data}, {args.max_iter} iterations, seeds {args.seeds} (means)")
    print("| recipe | AP50 | AP | AP50 per seed | minutes |\n| --- | --- | --- | --- | --- |")
    for name, mean, per_seed in table:
        print(f"| {name} | {mean['AP50']:.3f} | {mean['AP']:.3f} | "
              f"{' / '.join(f'{v:.3f}' for v in per_seed)} | {mean['minutes']:.1f} |")


if __name__ == "__main__":
    main()
