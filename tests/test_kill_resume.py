"""Interrupted training: a run killed at a random iteration resumes to the very same weights, and
SIGINT / SIGTERM stop a run cleanly with a checkpoint.

The runs are ``python -m yolov3 train`` subprocesses on the micro network and the generated demo
data (CPU, one process, a checkpoint every iteration), watched through their ``last.pt``.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import MICRO_CFG
from test_train import train_args
from yolov3.cli.main import main
from yolov3.errors import YoloError
from yolov3.weights.checkpoint import load_checkpoint

MAX_ITER = 12
pytestmark = pytest.mark.slow


def run_args(cfg: Path, out: Path) -> list[str]:
    return train_args(cfg, out, MAX_ITER, "--set", "train.checkpoint_interval=1")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "micro.cfg"
    path.write_text(MICRO_CFG)
    return path


@pytest.fixture(scope="module")
def reference(cfg: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The final checkpoint of the run without interruption."""
    out = tmp_path_factory.mktemp("straight")
    assert main(run_args(cfg, out)) == 0
    return load_checkpoint(out / "last.pt")


def saved_iteration(out: Path) -> int:
    """The iteration of the run's ``last.pt`` (0 before the first one is written)."""
    try:
        return load_checkpoint(out / "last.pt")["state"]["iteration"]
    except YoloError:  # not written yet
        return 0


def start_and_stop(cfg: Path, out: Path, at: int, signum: int) -> tuple[int, str]:
    """Start a training subprocess and send it ``signum`` once its checkpoint reaches
    iteration ``at``; returns its exit status and its output (stdout and stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "yolov3", *run_args(cfg, out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while saved_iteration(out) < at:
        assert process.poll() is None, process.communicate()[0][-2000:]
        assert time.monotonic() < deadline, "the run did not reach the iteration in time"
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be stopped"
    os.kill(process.pid, signum)
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


def assert_same_run(a: dict, b: dict) -> None:
    assert a["state"]["iteration"] == b["state"]["iteration"] == MAX_ITER
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["state"]["losses"] == b["state"]["losses"]  # every iteration once, same values


def test_sigkill_at_a_random_iteration_then_resume_gives_the_same_weights(
        cfg: Path, reference: dict, tmp_path: Path) -> None:
    at = random.Random(8).randint(3, MAX_ITER - 3)
    code, _ = start_and_stop(cfg, tmp_path, at, signal.SIGKILL)
    assert code == -signal.SIGKILL
    killed_at = saved_iteration(tmp_path)
    assert at <= killed_at < MAX_ITER
    assert main(["train", "--resume", str(tmp_path)]) == 0
    assert_same_run(reference, load_checkpoint(tmp_path / "last.pt"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_cleanly_with_a_checkpoint(signum: int, cfg: Path,
                                                           reference: dict,
                                                           tmp_path: Path) -> None:
    code, output = start_and_stop(cfg, tmp_path, 2, signum)
    assert code == 130, output[-2000:]
    assert "Traceback" not in output
    name = signal.Signals(signum).name
    found = re.search(rf"{name}: checkpoint written at iteration (\d+) to \S+", output)
    assert found, output[-2000:]
    stopped_at = int(found.group(1))
    assert 2 <= stopped_at < MAX_ITER
    assert saved_iteration(tmp_path) == stopped_at
    assert main(["train", "--resume", str(tmp_path)]) == 0
    assert_same_run(reference, load_checkpoint(tmp_path / "last.pt"))
