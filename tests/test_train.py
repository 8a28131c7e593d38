"""``yolov3 train`` end to end on generated data: what a run writes, checkpoints resume exactly.
(That training reaches an accuracy, with evaluation on: tests/test_training_reaches.py.)"""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from yolov3.cli.main import main
from yolov3.cli.train import overrides_from_args
from yolov3.errors import ConfigError
from yolov3.train.config import load_config
from yolov3.weights.checkpoint import load_checkpoint


def train_args(cfg: Path, out: Path, max_iter: int, *extra: str) -> list[str]:
    return ["train", "--model", str(cfg), "--weights", "none", "--out", str(out),
            "--max-iter", str(max_iter), "--batch-size", "4", "--subdivisions", "2",
            "--img-size", "64", "--workers", "0", "--eval-interval", "0",
            "--set", "multiscale.min_size=64", "--set", "multiscale.max_size=96",
            "--set", "multiscale.interval=2", "--set", "schedule.burn_in=2",
            "--set", "optimizer.lr=0.01", "--set", "train.log_interval=1", *extra]


def test_short_run_writes_its_outputs_and_resume_is_bit_identical(micro_cfg, tmp_path,
                                                                  capsys) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(train_args(micro_cfg, straight, 6, "--set", "train.checkpoint_interval=3")) == 0
    results = json.loads((straight / "results.json").read_text())
    assert results["iterations"] == 6 and results["images_seen"] == 24
    for name in ("last.pt", "last.weights", "model.cfg", "curves.png", "results.json"):
        assert (straight / name).is_file(), name
    assert len(list((straight / "val_images").glob("*.jpg"))) == 4
    assert list((straight / "tensorboard").iterdir())

    losses = load_checkpoint(straight / "last.pt")["state"]["losses"]
    assert [r["iteration"] for r in losses] == [1, 2, 3, 4, 5, 6]

    assert main(train_args(micro_cfg, split, 3)) == 0
    assert main(["train", "--resume", str(split), "--max-iter", "6"]) == 0
    a = load_checkpoint(straight / "last.pt")
    b = load_checkpoint(split / "last.pt")
    assert b["state"]["iteration"] == 6
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])


def test_config_file_and_command_line_combine(tmp_path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text("optimizer:\n  lr: 0.002\n  batch: 32\nschedule:\n  max_iter: 100\n")
    parser_args = ["train", "--config", str(config), "--batch-size", "16", "--set",
                   "schedule.max_iter=50", "--max-iter", "70"]
    from yolov3.cli.main import build_parser

    args = build_parser().parse_args(parser_args)
    overrides = overrides_from_args(args)
    # Shorthand options first, --set last: --set wins over --max-iter.
    assert overrides == ["optimizer.batch=16", "schedule.max_iter=70", "schedule.max_iter=50"]
    cfg = load_config(args.config, overrides)
    assert cfg.optimizer.lr == 0.002  # from the file
    assert cfg.optimizer.batch == 16  # the command line beats the file
    assert cfg.schedule.max_iter == 50
    assert cfg.optimizer.momentum == 0.9  # the preset fills the rest
    with pytest.raises(ConfigError, match=r"unknown key 'optimizer\.lrate'"):
        load_config(args.config, ["optimizer.lrate=0.1"])
    config.write_text("optimizer:\n  learning_rate: 0.002\n")
    expected = re.escape(f"{config}: unknown key 'optimizer.learning_rate'")
    with pytest.raises(ConfigError, match=expected):
        load_config(config)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 1
    assert "no last.pt there to resume from" in capsys.readouterr().err


def test_diverging_run_stops_with_a_checkpoint_and_a_clear_message(micro_cfg, tmp_path,
                                                                   capsys) -> None:
    out = tmp_path / "diverge"
    args = train_args(micro_cfg, out, 40, "--set", "optimizer.lr=1e12",
                      "--set", "schedule.burn_in=0", "--set", "train.max_nonfinite=2")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "2 non-finite losses in a row up to iteration" in err
    assert "training diverged" in err
    state = load_checkpoint(out / "last.pt")["state"]
    assert 2 <= state["iteration"] < 40


def test_anchors_auto_are_fitted_written_and_kept_on_resume(micro_cfg, tmp_path) -> None:
    from yolov3.model.cfg import cfg_anchors, load_cfg

    out = tmp_path / "auto"
    assert main(train_args(micro_cfg, out, 1, "--anchors", "auto")) == 0
    fitted = np.asarray(cfg_anchors(load_cfg(out / "model.cfg")))
    assert fitted.shape == (6, 2)
    assert not np.array_equal(fitted, cfg_anchors(load_cfg(micro_cfg)))
    saved = load_checkpoint(out / "last.pt")
    assert saved["config"]["model"]["anchors"] != "auto"
    assert main(["train", "--resume", str(out), "--max-iter", "2"]) == 0
    assert np.array_equal(cfg_anchors(load_cfg(out / "model.cfg")), fitted)


def test_frozen_batch_norm_statistics_stay_as_loaded_while_the_weights_learn(
        micro_cfg, tmp_path, capsys) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(train_args(micro_cfg, first, 2)) == 0
    assert main([*train_args(micro_cfg, second, 3, "--set", "model.freeze_bn=true"),
                 "--weights", str(first / "last.pt")]) == 0
    loaded, trained = (load_checkpoint(p / "last.pt")["model"] for p in (first, second))
    stats = [k for k in loaded if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(loaded[k], trained[k]) for k in stats)
    assert not torch.equal(loaded["layers.0.conv.weight"], trained["layers.0.conv.weight"])
    assert main(train_args(micro_cfg, tmp_path / "none", 1, "--set", "model.freeze_bn=true")) == 1
    assert "model.freeze_bn keeps the batch norms' loaded statistics, but model.weights is none" \
        in capsys.readouterr().err


@pytest.mark.parametrize("end", ["max_iter", "time_limit"])
def test_a_finished_run_leaves_no_loader_workers(micro_cfg, tmp_path, end) -> None:
    """The training loader's worker processes end with the run, whether it reached max_iter or
    stopped early (train.time_limit), so that a process training several runs (a notebook,
    benchmarks/recipes.py) does not gather idle workers holding their memory."""
    limit = ["--set", "train.time_limit=0.000001"] if end == "time_limit" else []
    assert main(train_args(micro_cfg, tmp_path / "run", 4, "--workers", "1", *limit)) == 0
    iterations = json.loads((tmp_path / "run" / "results.json").read_text())["iterations"]
    assert iterations == (1 if end == "time_limit" else 4)
    assert multiprocessing.active_children() == []
