"""DistributedDataParallel under torchrun on the CPU (gloo): same weights as one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MICRO_CFG
from yolov3.cli.main import main
from yolov3.errors import ConfigError
from yolov3.train.distributed import minibatch_per_process
from yolov3.weights.checkpoint import load_checkpoint


def common_args(cfg: Path, out: Path, max_iter: int, subdivisions: int) -> list[str]:
    return ["train", "--model", str(cfg), "--weights", "none", "--out", str(out),
            "--max-iter", str(max_iter), "--batch-size", "8", "--subdivisions", str(subdivisions),
            "--img-size", "64", "--workers", "0", "--eval-interval", "0",
            "--set", "multiscale.min_size=64", "--set", "multiscale.max_size=96",
            "--set", "multiscale.interval=1", "--set", "schedule.burn_in=1",
            "--set", "optimizer.lr=0.01", "--set", "train.checkpoint_interval=1"]


def torchrun(nproc: int, args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "yolov3", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def params(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run / "last.pt")["model"]
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


@pytest.mark.slow
def test_two_processes_equal_one_with_accumulation_and_resume_in_one(tmp_path) -> None:
    cfg = tmp_path / "micro.cfg"
    cfg.write_text(MICRO_CFG)
    # One process: 4 minibatches of 2 images per step. Two: 2 minibatches of 2 + 2 images.
    assert main(common_args(cfg, tmp_path / "one", 3, 4)) == 0
    torchrun(2, common_args(cfg, tmp_path / "two", 3, 2))
    one, two = params(tmp_path / "one"), params(tmp_path / "two")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-5, msg=key)

    # The checkpoint of the two processes continues in one (batch norm buffers came from
    # rank 0's share only, so the two runs agree closely rather than bit for bit).
    assert main(["train", "--resume", str(tmp_path / "two"), "--max-iter", "4",
                 "--subdivisions", "4"]) == 0
    assert main(["train", "--resume", str(tmp_path / "one"), "--max-iter", "4"]) == 0
    assert load_checkpoint(tmp_path / "two" / "last.pt")["state"]["iteration"] == 4
    one, two = params(tmp_path / "one"), params(tmp_path / "two")
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-3, atol=1e-3, msg=key)


def test_a_batch_the_processes_cannot_share_is_a_clear_error() -> None:
    assert minibatch_per_process(64, 16, 4) == 1
    assert minibatch_per_process(64, 8, 2) == 4
    with pytest.raises(ConfigError) as err:
        minibatch_per_process(64, 16, 3)
    message = str(err.value)
    assert "optimizer.batch (64) must be a multiple of optimizer.subdivisions (16) x " \
           "processes (3) = 48" in message
    assert "make optimizer.batch a multiple of 48" in message
    with pytest.raises(ConfigError, match=r"set optimizer\.subdivisions=5"):
        minibatch_per_process(20, 6, 2)
