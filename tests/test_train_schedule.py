"""The run's length and lr schedule in epochs (ScheduleConfig.resolve), the loader's worker
count (train.workers: auto), and what a run says when it starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from yolov3.cli.main import main
from yolov3.errors import ConfigError
from yolov3.inputs.loader import MAX_AUTO_WORKERS, auto_workers
from yolov3.train.config import load_config
from yolov3.train.optim import lr_factor


def test_finetune_keeps_kangaroos_schedule_and_follows_a_larger_dataset() -> None:
    small = load_config("finetune").schedule
    small.resolve(128, 16)  # kangaroo's training split: today's 230 iterations
    assert (small.max_iter, small.steps, small.burn_in, small.epochs) == (230, [184, 215], 8, None)
    large = load_config("finetune").schedule
    text = large.resolve(3000, 16)
    assert (large.max_iter, large.steps, large.burn_in) == (4688, [3750, 4383], 164)
    assert "25 epochs = 4,688 iterations" in text
    huge = load_config("finetune").schedule
    huge.resolve(1_000_000, 16)
    assert huge.max_iter == 20000 and huge.steps == [16000, 18700]
    darknet = load_config("finetune-darknet").schedule
    darknet.resolve(128, 16)
    assert (darknet.max_iter, darknet.steps, darknet.burn_in) == (300, [240, 280], 10)


def test_darknets_coco_recipe_keeps_its_iterations_and_says_its_epochs() -> None:
    schedule = load_config(None).schedule
    text = schedule.resolve(117_264, 64)
    assert (schedule.max_iter, schedule.steps, schedule.burn_in) == (500200, [400000, 450000],
                                                                     1000)
    assert "500,200 iterations (273.0 epochs)" in text


def test_fractions_are_of_the_runs_length() -> None:
    schedule = load_config(None, ["schedule.max_iter=1000", "schedule.steps=[0.5, 900]",
                                  "schedule.burn_in=0.1"]).schedule
    schedule.resolve(100, 10)
    assert (schedule.steps, schedule.burn_in) == ([500, 900], 100)
    assert lr_factor(499, schedule) == 1.0 and lr_factor(500, schedule) == pytest.approx(0.1)


@pytest.mark.parametrize(("override", "message"), [
    ("schedule.epochs=0", r"schedule.epochs must be a number > 0"),
    ("schedule.steps=[1.5]", r"schedule.steps values are iterations, or fractions"),
    ("schedule.burn_in=-1", r"schedule.burn_in values are iterations"),
    ("schedule.min_iter=600000", r"schedule.min_iter must be in \[0, schedule.max_iter\]"),
    ("train.workers=-1", r"train.workers is a number of loader processes >= 0 or 'auto'"),
    ("train.workers=many", r"train.workers is a number of loader processes"),
])
def test_bad_schedule_and_worker_values(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(("cores", "processes", "expected"), [
    (1, 1, 0), (2, 1, 1), (16, 1, 15), (64, 1, MAX_AUTO_WORKERS), (64, 8, 7), (8, 8, 0)])
def test_auto_workers_use_the_cores_of_each_process(monkeypatch, cores, processes,
                                                    expected) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    assert auto_workers() == expected


def test_a_run_in_epochs_records_its_iterations(micro_cfg, tmp_path, caplog) -> None:
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="yolov3"):
        code = main(["train", "--model", str(micro_cfg), "--weights", "none", "--out", str(out),
                     "--epochs", "0.005", "--batch-size", "4", "--subdivisions", "1",
                     "--img-size", "64", "--workers", "auto", "--eval-interval", "0",
                     "--set", "multiscale.interval=0", "--set", "schedule.steps=[0.5]",
                     "--set", "schedule.scales=[0.1]", "--set", "schedule.burn_in=0"])
    assert code == 0
    saved = yaml.safe_load(Path(out / "config.yaml").read_text())["schedule"]
    # 0.005 epochs of the 4,000 generated training images at batch 4: 5 iterations.
    assert (saved["epochs"], saved["max_iter"], saved["steps"]) == (None, 5, [2])
    assert "schedule: 4,000 training images at batch 4: 0.005 epochs = 5 iterations" in caplog.text
    assert "device: cpu" in caplog.text
    with pytest.raises(SystemExit):
        main(["train", "--workers", "-1"])
