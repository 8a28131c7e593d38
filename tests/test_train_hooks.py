"""The training loop's hooks (yolov3.train.hooks, loggers, run_files), run through the real
Trainer from Python on the generated demo data: when each hook acts, a user's own hook, the
CSV log, config.yaml, and the optional loggers."""

from __future__ import annotations

import csv
import importlib.machinery
import logging
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from data_factory import write_yolo
from yolov3.errors import ConfigError
from yolov3.train import Hook, StepInfo, Trainer, load_config
from yolov3.weights.checkpoint import load_checkpoint


def small_config(cfg: Path, *extra: str) -> Any:
    """A 6-iteration run of the micro network on the generated shapes, evaluated every 3
    iterations, a checkpoint every 2, logged every 2."""
    return load_config(None, [
        f"model.cfg={cfg}", "model.weights=null", "data.img_size=64", "optimizer.batch=4",
        "optimizer.subdivisions=2", "schedule.max_iter=6", "schedule.burn_in=2",
        "schedule.steps=[]", "schedule.scales=[]", "multiscale.interval=0",
        "train.workers=0", "train.eval_interval=3", "train.checkpoint_interval=2",
        "train.log_interval=2", "train.device=cpu", *extra])


class Recorder(Hook):
    """Writes down every call it gets, and the iteration of the last ``last.pt`` when the next
    step starts (the checkpoint hook runs after the user's hooks)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.saved: list[int | None] = []
        self.metrics: dict[int, dict[str, float]] = {}

    def before_train(self, trainer: Trainer) -> None:
        self.calls.append(("before_train", trainer.state.iteration))

    def before_step(self, trainer: Trainer, iteration: int, minibatches: list) -> None:
        self.calls.append(("before_step", iteration))
        self.saved.append(trainer.saved_iteration)
        assert len(minibatches) == 2 and minibatches[0][0].shape == (2, 3, 64, 64)

    def after_step(self, trainer: Trainer, step: StepInfo) -> None:
        self.calls.append(("after_step", step.iteration))
        assert step.images == 4 and step.finite and step.input_hw == (64, 64)

    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        self.calls.append(("after_evaluation", iteration))
        self.metrics[iteration] = metrics

    def after_train(self, trainer: Trainer, results: dict[str, Any]) -> None:
        self.calls.append(("after_train", results["iterations"]))

    def close(self, trainer: Trainer) -> None:
        self.calls.append(("close", trainer.state.iteration))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_each_hook_acts_at_its_iterations(micro_cfg, tmp_path) -> None:
    recorder = Recorder()
    out = tmp_path / "run"
    results = Trainer(small_config(micro_cfg), out, hooks=[recorder]).train()

    steps = [i for name, i in recorder.calls if name == "after_step"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert recorder.calls[0] == ("before_train", 0)
    assert recorder.calls[-2:] == [("after_train", 6), ("close", 6)]
    # Evaluation every 3 iterations; the after_evaluation of iteration 3 comes before its
    # after_step reaches the user's hook (evaluation is an earlier hook of the same point).
    assert [i for name, i in recorder.calls if name == "after_evaluation"] == [3, 6]
    assert recorder.calls.index(("after_evaluation", 3)) < recorder.calls.index(("after_step", 3))
    # last.pt every 2 iterations: what was saved when each step started.
    assert recorder.saved == [None, None, 2, 2, 4, 4]
    payload = load_checkpoint(out / "last.pt")
    assert payload["state"]["iteration"] == 6
    # History: the loss every log_interval and the first; every evaluation.
    assert [r["iteration"] for r in payload["state"]["losses"]] == [1, 2, 4, 6]
    assert [e["iteration"] for e in payload["state"]["evals"]] == [3, 6]
    best = max((3, 6), key=lambda i: (recorder.metrics[i]["AP50"], -i))
    assert payload["state"]["best_iteration"] == best == results["best"]["iteration"]
    assert load_checkpoint(out / "best.pt")["state"]["iteration"] == best

    rows = read_csv(out / "results.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 6]
    assert list(rows[0]) == ["iteration", "loss/xy", "loss/wh", "loss/obj", "loss/cls",
                             "loss/total", "lr", "images_per_second", "val/AP", "val/AP50"]
    by_iteration = {int(r["iteration"]): r for r in rows}
    assert by_iteration[3]["loss/total"] == ""  # not a logged iteration, but evaluated
    assert float(by_iteration[3]["val/AP50"]) == pytest.approx(recorder.metrics[3]["AP50"],
                                                               abs=1e-5)
    assert by_iteration[4]["val/AP"] == ""
    for r, logged in zip((by_iteration[i] for i in (1, 2, 4, 6)), payload["state"]["losses"],
                         strict=True):
        assert float(r["loss/total"]) == pytest.approx(logged["total"], rel=1e-5)
        assert float(r["lr"]) > 0
    for name in ("config.yaml", "model.cfg", "labels.png", "train_batch0.jpg", "last.weights",
                 "curves.png", "results.json"):
        assert (out / name).is_file(), name


class StopAtFirstEvaluation(Hook):
    def after_evaluation(self, trainer: Trainer, iteration: int,
                         metrics: dict[str, float]) -> None:
        trainer.finish_early(f"stopped by the user's hook at iteration {iteration}")


def test_a_users_hook_can_end_the_run(micro_cfg, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    results = Trainer(small_config(micro_cfg), out, hooks=[StopAtFirstEvaluation()]).train()
    assert results["iterations"] == 3
    assert "stopped by the user's hook at iteration 3" in capsys.readouterr().out
    # The end of the run is a normal end: a checkpoint of iteration 3 and the end files.
    assert load_checkpoint(out / "last.pt")["state"]["iteration"] == 3
    assert (out / "last.weights").is_file() and (out / "results.json").is_file()


def test_time_limit_ends_the_run_at_the_iteration_that_passes_it(micro_cfg, tmp_path) -> None:
    results = Trainer(small_config(micro_cfg, "train.time_limit=1e-9"), tmp_path / "r").train()
    assert results["iterations"] == 1
    assert results["final"]["AP50"] is not None  # the last iteration is evaluated


class Explode(Hook):
    """Makes the loss of every iteration from the third on non-finite."""

    def before_step(self, trainer: Trainer, iteration: int, minibatches: list) -> None:
        if iteration >= 3:
            for images, _ in minibatches:
                images.fill_(float("nan"))


def test_divergence_guard_stops_after_max_nonfinite_in_a_row(micro_cfg, tmp_path) -> None:
    from yolov3.errors import YoloError

    out = tmp_path / "run"
    trainer = Trainer(small_config(micro_cfg, "train.max_nonfinite=2", "train.eval_interval=0"),
                      out, hooks=[Explode()])
    with pytest.raises(YoloError, match=r"2 non-finite losses in a row up to iteration 4"):
        trainer.train()
    payload = load_checkpoint(out / "last.pt")
    assert payload["state"]["iteration"] == 4
    assert all(torch.isfinite(t).all() for t in payload["model"].values()
               if t.is_floating_point())
    assert [int(r["iteration"]) for r in read_csv(out / "results.csv")] == [1, 2]


def test_config_yaml_reruns_the_resolved_config(micro_cfg, tmp_path) -> None:
    config = small_config(micro_cfg, "model.anchors=auto", "data.aspect=auto",
                          "schedule.max_iter=2", "train.eval_interval=0")
    out = tmp_path / "run"
    Trainer(config, out).train()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["anchors"] != "auto" and saved["data"]["aspect"] == 1.0
    again = load_config(out / "config.yaml")
    assert again.to_dict() == config.to_dict()
    assert again.to_dict() == load_checkpoint(out / "last.pt")["config"]


def test_resume_keeps_the_csv_rows_of_its_checkpoint(micro_cfg, tmp_path) -> None:
    out = tmp_path / "run"
    Trainer(small_config(micro_cfg, "schedule.max_iter=4", "train.eval_interval=0"),
            out).train()
    with open(out / "results.csv", "a") as f:  # rows a killed run wrote past its checkpoint
        f.write("5,1,1,1,1,1,0.1,10,,\n")
    from yolov3.weights.checkpoint import load_checkpoint as load

    saved = load(out / "last.pt", keys=("config",))["config"]
    config = load_config(None, ["schedule.max_iter=6"], saved=(saved, "last.pt"))
    Trainer(config, out, resume=True).train()
    assert [int(r["iteration"]) for r in read_csv(out / "results.csv")] == [1, 2, 4, 6]


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_an_optional_logger_that_is_not_installed_is_a_clear_error(name, micro_cfg,
                                                                   monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed, whatever this machine has
    with pytest.raises(ConfigError, match=rf"train.loggers: {name} is not installed: "
                                          rf"pip install {name}"):
        small_config(micro_cfg, f"train.loggers=[tensorboard,{name}]")


def test_an_unknown_logger_names_the_known_ones(micro_cfg) -> None:
    with pytest.raises(ConfigError, match=r"unknown logger 'csv' \(known: tensorboard, wandb, "
                                          r"mlflow; results.csv is always written\)"):
        small_config(micro_cfg, "train.loggers=[csv]")


def test_mlflow_logger_sends_the_scalars_and_the_config(micro_cfg, tmp_path,
                                                        monkeypatch) -> None:
    """Against MLflow's documented calls (start_run, log_params, log_metrics, end_run), by a
    stand-in module that records them: MLflow itself is an optional extra."""
    calls: list[tuple[str, Any]] = []
    mlflow = types.ModuleType("mlflow")
    mlflow.__spec__ = importlib.machinery.ModuleSpec("mlflow", None)
    mlflow.start_run = lambda run_name: calls.append(("start_run", run_name))
    mlflow.log_params = lambda params: calls.append(("log_params", params))
    mlflow.log_metrics = lambda metrics, step: calls.append(("log_metrics", (step, metrics)))
    mlflow.end_run = lambda: calls.append(("end_run", None))
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    config = small_config(micro_cfg, "train.loggers=[mlflow]")
    Trainer(config, tmp_path / "exp").train()
    assert calls[0] == ("start_run", "exp")
    assert calls[1][0] == "log_params" and calls[1][1]["optimizer.batch"] == 4
    metrics = [value for name, value in calls if name == "log_metrics"]
    assert [step for step, _ in metrics] == [1, 2, 3, 4, 6]
    assert set(metrics[0][1]) >= {"loss/total", "lr", "images_per_second"}
    assert set(metrics[2][1]) == {"val/AP", "val/AP50"}
    assert calls[-1] == ("end_run", None)
    assert not (tmp_path / "exp" / "tensorboard").exists()  # only the loggers asked for


class BreakValidation(Hook):
    """From the second iteration on, one validation image is unreadable and the split
    strict: evaluating it raises (as a bad file found mid-run would)."""

    def before_step(self, trainer: Trainer, iteration: int, minibatches: list) -> None:
        if iteration == 2:
            trainer.val_data.problems.strict = True
            Path(trainer.val_data.files[0]).write_bytes(b"not an image")


def test_a_failed_evaluation_costs_no_training(micro_cfg, tmp_path, caplog) -> None:
    data = write_yolo(tmp_path / "data")
    out = tmp_path / "run"
    config = small_config(micro_cfg, f"data.dataset={data}", "optimizer.batch=2",
                          "optimizer.subdivisions=1", "train.checkpoint_interval=0")
    with caplog.at_level(logging.ERROR, logger="yolov3"):
        results = Trainer(config, out, hooks=[BreakValidation()]).train()
    assert results["iterations"] == 6 and results["final"]["AP50"] is None
    assert "iteration 3: the evaluation failed (DataError" in caplog.text
    assert "last.pt is written and training goes on" in caplog.text
    assert load_checkpoint(out / "last.pt")["state"]["iteration"] == 6
