"""What an evaluation leaves behind: a printed table, metrics.json, predictions.json and the
precision-recall plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from yolov3.evaluation.metrics import STAT_NAMES, CocoMetrics
from yolov3.fileio import atomic_write

_STAT_WORDS = {
    "AP": "AP  @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AP50": "AP  @[IoU=0.50      | area=   all | maxDets=100]",
    "AP75": "AP  @[IoU=0.75      | area=   all | maxDets=100]",
    "APs": "AP  @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "APm": "AP  @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "APl": "AP  @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR1": "AR  @[IoU=0.50:0.95 | area=   all | maxDets=  1]",
    "AR10": "AR  @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR100": "AR  @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "ARs": "AR  @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "ARm": "AR  @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ARl": "AR  @[IoU=0.50:0.95 | area= large | maxDets=100]",
}


def _value(v: float | None) -> str:
    return "    -" if v is None or v < 0 else f"{v:.3f}"


def format_table(metrics: CocoMetrics) -> str:
    """The 12 COCO numbers, then AP50 and AP per class."""
    lines = [f"{name:>5}  {_STAT_WORDS[name]} = {_value(metrics.stats[name])}"
             for name in STAT_NAMES]
    width = max([5, *(len(c["name"]) for c in metrics.per_class)])
    lines += ["", f"{'class':<{width}}  {'id':>4}  {'boxes':>6}   AP50     AP"]
    lines += [f"{c['name']:<{width}}  {c['id']:>4}  {c['boxes']:>6}  {_value(c['AP50'])}  "
              f"{_value(c['AP'])}" for c in metrics.per_class]
    return "\n".join(lines)


def metrics_dict(metrics: CocoMetrics) -> dict[str, Any]:
    """``AP``, ``AP50``, ... ``ARl`` and ``per_class`` (id, name, boxes, AP, AP50)."""
    return {**metrics.stats, "per_class": metrics.per_class}


def plot_pr_curve(metrics: CocoMetrics, path: Path) -> None:
    """Precision against recall at IoU 0.5: one thin line per class (up to 20 are named) and
    the mean over classes, as COCOeval interpolates them. Drawn on matplotlib's Agg canvas
    without pyplot, so the caller's backend is left alone."""
    fig = Figure(figsize=(7, 6), dpi=100)
    ax = fig.subplots()
    with_boxes = [k for k, c in enumerate(metrics.per_class) if c["AP50"] is not None]
    for k in with_boxes:
        c = metrics.per_class[k]
        label = f"{c['name']} {c['AP50']:.3f}" if len(with_boxes) <= 20 else None
        ax.plot(metrics.recall, metrics.precision50[:, k].clip(0), linewidth=1, label=label)
    if with_boxes:
        mean = metrics.precision50[:, with_boxes].clip(0).mean(axis=1)
        ax.plot(metrics.recall, mean, color="black", linewidth=3,
                label=f"all classes {metrics.stats['AP50']:.3f} AP50")
        ax.legend(loc="lower left", fontsize="small")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01),
           title="precision-recall, IoU 0.5")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png")


def write_report(out_dir: Path, metrics: dict[str, Any], coco_metrics: CocoMetrics,
                 predictions: list[dict[str, Any]]) -> None:
    """``out_dir/metrics.json``, ``predictions.json`` (COCO results format) and
    ``pr_curve.png``."""
    with atomic_write(out_dir / "metrics.json") as f:
        f.write(json.dumps(metrics, indent=1).encode())
    with atomic_write(out_dir / "predictions.json") as f:
        f.write(json.dumps(predictions).encode())
    plot_pr_curve(coco_metrics, out_dir / "pr_curve.png")
