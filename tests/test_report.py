"""The report's figures drawn beside COCOeval (forked processes on Linux), the fallback that
draws here what a process failed to write, and val's default loader workers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from yolov3.cli.runtime import loader_workers
from yolov3.evaluation.report import BackgroundFigures

FORKS = sys.platform.startswith("linux")


def square(size: float) -> Figure:
    fig = Figure(figsize=(size, size), dpi=100)
    fig.subplots().plot([0, 1], [0, 1])
    return fig


def test_each_figure_is_written_by_its_own_process(tmp_path: Path) -> None:
    jobs = [(lambda: square(2), tmp_path / "a.png"), (lambda: square(3), tmp_path / "b.png")]
    figures = BackgroundFigures(jobs)
    assert len(figures.processes) == (2 if FORKS else 0)
    figures.wait()
    for path, side in ((tmp_path / "a.png", 200), (tmp_path / "b.png", 300)):
        with Image.open(path) as im:
            assert im.size == (side, side)
    assert all(p.exitcode == 0 for p in figures.processes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporaries


def test_a_figure_that_failed_in_its_process_is_drawn_here(tmp_path: Path) -> None:
    parent = os.getpid()

    def only_here() -> Figure:
        if os.getpid() != parent:
            raise RuntimeError("not in the forked process")
        return square(2)

    figures = BackgroundFigures([(only_here, tmp_path / "late.png"),
                                 (lambda: square(1), tmp_path / "early.png")])
    figures.wait()
    if FORKS:
        assert figures.processes[0].exitcode != 0 and figures.processes[1].exitcode == 0
    with Image.open(tmp_path / "late.png") as im:
        assert im.size == (200, 200)
    assert (tmp_path / "early.png").is_file()


def test_an_error_everywhere_shows_here_with_its_message(tmp_path: Path) -> None:
    def broken() -> Figure:
        raise ValueError("no such class")

    figures = BackgroundFigures([(broken, tmp_path / "x.png")])
    with pytest.raises(ValueError, match="no such class"):
        figures.wait()
    assert not (tmp_path / "x.png").exists()


def test_loader_workers_default_by_device() -> None:
    assert loader_workers(3, torch.device("cpu")) == 3
    assert loader_workers(0, torch.device("cuda")) == 0
    assert loader_workers("auto", torch.device("cuda")) == 2  # the CPU is free beside a GPU
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert loader_workers("auto", torch.device("cpu")) == (0 if cores <= 2 else 2)
