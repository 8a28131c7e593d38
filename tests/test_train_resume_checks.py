"""What a run reads is never destroyed, and a resume trains on what the run trained on
(yolov3.train.run_folder and yolov3.train.checkpoints): --overwrite that would delete the
run's own inputs, a resume from another working directory or onto changed data, classes or
cfg, a best.pt gone missing, and a run stopped before it saved anything."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_factory import write_yolo
from yolov3.cli.main import main
from yolov3.train import Hook, Trainer, load_config
from yolov3.train.run_folder import RUN_FILES
from yolov3.weights.checkpoint import load_checkpoint


def train(cfg: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(cfg), "--weights", "none", "--out", str(out),
            "--max-iter", "2", "--batch-size", "2", "--subdivisions", "1", "--img-size", "64",
            "--workers", "0", "--eval-interval", "0", "--set", "multiscale.interval=0",
            "--set", "schedule.burn_in=0", "--set", "schedule.steps=[]",
            "--set", "schedule.scales=[]", *extra]


def test_overwrite_never_deletes_what_the_run_reads(micro_cfg, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(train(micro_cfg, run)) == 0
    before = sorted(p.name for p in run.iterdir())
    for extra in (["--weights", str(run / "last.pt")],
                  ["--model", str(run / "model.cfg")],
                  ["--config", str(run / "config.yaml")]):
        code = main([*train(micro_cfg, run, "--overwrite"), *extra])
        err = capsys.readouterr().err
        assert code == 1, extra
        assert "--overwrite would delete" in err and "which this run reads" in err, err
        assert sorted(p.name for p in run.iterdir()) == before, extra
    # Weights kept outside the folder: the overwrite goes ahead.
    (tmp_path / "keep.pt").write_bytes((run / "last.pt").read_bytes())
    assert main([*train(micro_cfg, run, "--overwrite"), "--weights",
                 str(tmp_path / "keep.pt")]) == 0


def test_resume_from_elsewhere_trains_on_the_runs_data(micro_cfg, tmp_path, monkeypatch,
                                                       capsys) -> None:
    write_yolo(tmp_path / "start" / "data")
    monkeypatch.chdir(tmp_path / "start")
    run = tmp_path / "run"
    assert main(train(micro_cfg, run, "--data", "data")) == 0
    assert load_checkpoint(run / "last.pt")["config"]["data"]["dataset"] == str(
        (tmp_path / "start" / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    write_yolo(elsewhere / "data")
    (elsewhere / "data" / "images" / "val" / next(
        p.name for p in (elsewhere / "data" / "images" / "val").iterdir())).unlink()
    monkeypatch.chdir(elsewhere)  # a ./data here too, with another image count
    assert main(["train", "--resume", str(run), "--max-iter", "3"]) == 0
    assert json.loads((run / "results.json").read_text())["iterations"] == 3
    # Naming the other data is refused, with what differs.
    assert main(["train", "--resume", str(run), "--max-iter", "4", "--data", "data"]) == 1
    err = capsys.readouterr().err
    assert "the run trained on" in err and "resume from the folder the run started in" in err


def test_resume_onto_other_classes_or_another_cfg_says_what_differs(micro_cfg, tmp_path,
                                                                    capsys) -> None:
    run = tmp_path / "run"
    assert main(train(micro_cfg, run)) == 0  # the demo data: 5 classes
    data = write_yolo(tmp_path / "data")
    yaml_text = data.read_text().replace("names: [", "names: [extra, ")
    (tmp_path / "data" / "data.yaml").write_text(yaml_text)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-iter", "3", "--data", str(data)]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # one error line, after the data's own warning
    assert last.startswith("yolov3 train: error:") and "Traceback" not in err
    assert "the run learned 5 classes" in last and "the data now has 4" in last, err
    wider = tmp_path / "wider.cfg"
    wider.write_text(micro_cfg.read_text().replace("filters=8", "filters=16", 1))
    assert main(["train", "--resume", str(run), "--max-iter", "3", "--set",
                 f"model.cfg={wider}"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("yolov3 train: error:") and "Traceback" not in err
    assert "the run's network is not this config's" in last and "in the checkpoint and" in last


def test_resume_without_its_best_writes_it_again(micro_cfg, tmp_path, caplog) -> None:
    run = tmp_path / "run"
    assert main(train(micro_cfg, run, "--eval-interval", "1")) == 0
    assert load_checkpoint(run / "last.pt")["state"]["best_iteration"] in (1, 2)
    (run / "best.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="yolov3"):
        assert main(["train", "--resume", str(run), "--max-iter", "3"]) == 0
    assert "best.pt (iteration" in caplog.text and "is missing" in caplog.text
    assert load_checkpoint(run / "best.pt")["state"]["best_iteration"] == 3
    assert json.loads((run / "results.json").read_text())["best"]["iteration"] == 3


class FailFirstStep(Hook):
    def before_step(self, trainer: Trainer, iteration: int, minibatches: list) -> None:
        raise RuntimeError("the first step failed")


def test_a_run_that_failed_before_it_saved_leaves_nothing_that_blocks(micro_cfg,
                                                                      tmp_path) -> None:
    run = tmp_path / "run"
    config = load_config(None, [
        f"model.cfg={micro_cfg}", "model.weights=null", "data.img_size=64",
        "optimizer.batch=2", "optimizer.subdivisions=1", "schedule.max_iter=2",
        "multiscale.interval=0", "train.workers=0", "train.eval_interval=0"])
    with pytest.raises(RuntimeError, match="the first step failed"):
        Trainer(config, run, hooks=[FailFirstStep()]).train()
    assert not [name for name in RUN_FILES if (run / name).exists()]
    assert main(train(micro_cfg, run)) == 0  # the same command again, no --resume needed


def test_sigterm_at_the_start_leaves_a_resumable_run_or_none(micro_cfg, tmp_path) -> None:
    run = tmp_path / "run"
    args = train(micro_cfg, run)
    args[args.index("--max-iter") + 1] = "100000"
    proc = subprocess.Popen([sys.executable, "-m", "yolov3", *args], stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not (run / "model.cfg").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=180)
    left = [name for name in RUN_FILES if (run / name).exists()]
    if (run / "last.pt").is_file():  # stopped after its first iteration, with a checkpoint
        assert main(["train", "--resume", str(run), "--max-iter",
                     str(load_checkpoint(run / "last.pt")["state"]["iteration"] + 1)]) == 0
    else:
        assert not left, left
        assert main(train(micro_cfg, run)) == 0
