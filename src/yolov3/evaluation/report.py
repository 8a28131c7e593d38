"""What an evaluation leaves behind: a printed table and summary, metrics.json,
predictions.json, the precision-recall plot, the P/R/F1 curves and the confusion matrix."""

from __future__ import annotations

import json
import multiprocessing
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from yolov3.evaluation.confusion import ConfusionMatrix, confusion_figure
from yolov3.evaluation.curves import ScoreCurves, curves_figure
from yolov3.evaluation.metrics import STAT_NAMES, CocoMetrics
from yolov3.fileio import atomic_write

# The files of an evaluation's report (:func:`start_report`, :func:`finish_report`).
REPORT_FILES = ("metrics.json", "predictions.json", "pr_curve.png", "prf_curves.png",
                "confusion_matrix.png", "confusion_matrix.json")

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


def format_best_f1(best: dict[str, Any] | None) -> str:
    """One line: the score threshold of the best mean F1 (:meth:`ScoreCurves.best_f1`), with
    the mean precision and recall there."""
    if best is None:
        return "best F1: no ground-truth boxes to find"
    return (f"best F1 {best['F1']:.3f} at score > {best['threshold']:g}: precision "
            f"{best['P']:.3f}, recall {best['R']:.3f} (means over {best['classes']} classes, "
            f"IoU {best['iou']:g})")


def metrics_dict(metrics: CocoMetrics, curves: ScoreCurves) -> dict[str, Any]:
    """``AP``, ``AP50``, ... ``ARl``, ``per_class`` (id, name, boxes, AP, AP50) and
    ``best_f1`` (threshold, P, R, F1, iou, classes: :meth:`ScoreCurves.best_f1`)."""
    return {**metrics.stats, "per_class": metrics.per_class, "best_f1": curves.best_f1()}


def save_figure(fig: Figure, path: Path) -> None:
    """A matplotlib figure (drawn on the Agg canvas, without pyplot, so the caller's backend
    is left alone) written as a PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        fig.savefig(f, format="png")


def plot_pr_curve(metrics: CocoMetrics, path: Path) -> None:
    """Precision against recall at IoU 0.5: one thin line per class (up to 20 are named) and
    the mean over classes, as COCOeval interpolates them."""
    fig = Figure(figsize=(7, 6), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.09, top=0.94)
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
    save_figure(fig, path)


def _write_json(path: Path, value: Any, indent: int | None = None) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(value, indent=indent).encode())


FigureJob = tuple[Callable[[], Figure], Path]


def _draw(jobs: list[FigureJob]) -> None:
    for make, path in jobs:
        save_figure(make(), path)


class BackgroundFigures:
    """Figures drawn and written while the caller goes on: each job is a figure maker and the
    PNG it is written to. On Linux each is drawn by a forked process of its own (on a machine
    of 2 cores the confusion matrix of 80 classes and the P/R/F1 curves took 0.3-0.6 s each,
    more than COCOeval and the rest of the report together); elsewhere, and in a daemonic
    process, they are drawn here at :meth:`wait`. :meth:`wait` joins the processes and draws
    again here what one of them failed to write, so that an error shows with its traceback and
    no file is missing (each is written atomically)."""

    def __init__(self, jobs: list[FigureJob]) -> None:
        self.jobs = jobs
        self.processes: list[multiprocessing.process.BaseProcess] = []
        # (a daemonic process, as a pool's worker, may not start processes of its own)
        if sys.platform.startswith("linux") and not multiprocessing.current_process().daemon:
            fork = multiprocessing.get_context("fork")
            self.processes = [fork.Process(target=_draw, args=([job],), name="yolov3-figure",
                                           daemon=True) for job in jobs]
            for process in self.processes:
                process.start()

    def wait(self) -> None:
        """Return once every figure is written."""
        if not self.processes:
            _draw(self.jobs)
        for job, process in zip(self.jobs, self.processes, strict=False):
            process.join()
            if process.exitcode != 0:
                _draw([job])


def start_report(out_dir: Path, curves: ScoreCurves, confusion: ConfusionMatrix
                 ) -> BackgroundFigures:
    """Begin the report in ``out_dir`` with what needs no COCOeval: ``confusion_matrix.json``
    now, ``prf_curves.png`` (P, R and F1 against the score threshold) and
    ``confusion_matrix.png`` in the background; :func:`finish_report` writes the rest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / "confusion_matrix.json", confusion.to_dict())
    return BackgroundFigures([
        (lambda: confusion_figure(confusion), out_dir / "confusion_matrix.png"),
        (lambda: curves_figure(curves), out_dir / "prf_curves.png"),
    ])


def finish_report(out_dir: Path, figures: BackgroundFigures, metrics: dict[str, Any],
                  coco_metrics: CocoMetrics, predictions: list[dict[str, Any]]) -> None:
    """The rest of the :data:`REPORT_FILES` in ``out_dir``: ``metrics.json``,
    ``predictions.json`` (COCO results format) and ``pr_curve.png``; then waits for the
    ``figures`` of :func:`start_report`."""
    _write_json(out_dir / "metrics.json", metrics, indent=1)
    _write_json(out_dir / "predictions.json", predictions)
    plot_pr_curve(coco_metrics, out_dir / "pr_curve.png")
    figures.wait()
