"""What a training run leaves for its user: loss/AP curves and the results summary."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the Agg backend is chosen first

from yolov3.fileio import atomic_write


def plot_curves(
    losses: Sequence[dict[str, float]], evals: Sequence[dict[str, float]], path: str | Path
) -> None:
    """``curves.png``: the loss parts and the total against the iteration (log scale), and
    AP / AP50 of each evaluation. Each record has an ``iteration`` key; a loss record's other
    keys are its parts, ``total`` last."""
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(12, 4.5))
    if losses:
        its = [r["iteration"] for r in losses]
        for part in [k for k in losses[0] if k != "iteration"]:
            ax_loss.plot(its, [max(r[part], 1e-6) for r in losses], label=part,
                         linewidth=2 if part == "total" else 1)
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="iteration", ylabel="loss per image (sum over anchors)", title="loss")
    ax_loss.legend()
    if evals:
        its = [r["iteration"] for r in evals]
        for key in ("AP50", "AP"):
            ax_ap.plot(its, [r[key] for r in evals], marker="o", label=key)
        ax_ap.legend()
    ax_ap.set(xlabel="iteration", ylabel="COCO metric", title="validation", ylim=(0, 1))
    ax_ap.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def write_json(path: str | Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=2).encode())
