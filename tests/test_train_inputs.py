"""What ``yolov3 train`` takes in: a resumed run takes its new optimiser values and --config
file, bad values are one clear error, text options stay text, a malformed COCO annotation is
left out of the metric's ground truth as the reader leaves it out of the dataset, and
validation images that are training images too are flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import MICRO3_CFG
from data_factory import NAMES, write_coco, write_yolo
from yolov3.cli.main import build_parser, main
from yolov3.cli.train import overrides_from_args
from yolov3.datasets.coco import CocoDataset
from yolov3.errors import ConfigError
from yolov3.evaluation import evaluate
from yolov3.inference import DetectOptions
from yolov3.model import build_model
from yolov3.model.cfg import parse_cfg_text
from yolov3.train.config import load_config
from yolov3.weights.checkpoint import load_checkpoint


def train_args(cfg: Path, out: Path, max_iter: int, *extra: object) -> list[str]:
    """A run of the micro network on the built-in demo data, 4 images per step."""
    args: list[object] = [
        "train", "--model", cfg, "--weights", "none", "--out", out, "--max-iter", max_iter,
        "--batch-size", 4, "--subdivisions", 2, "--img-size", 64, "--workers", 0,
        "--eval-interval", 0, "--set", "multiscale.interval=0", *extra]
    return [str(a) for a in args]


def conv_weight_count(cfg: Path) -> int:
    return sum(isinstance(m, torch.nn.Conv2d) for m in build_model(cfg, num_classes=3).modules())


# --- a resumed run uses the momentum and decay of its config -----------------------------

def test_resume_applies_changed_momentum_decay_and_batch(micro_cfg, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(train_args(micro_cfg, out, 1)) == 0
    before = load_checkpoint(out / "last.pt")["optimizer"]["param_groups"]
    assert [g["momentum"] for g in before] == [0.9, 0.9]
    assert before[0]["weight_decay"] == pytest.approx(0.0005 * 4)

    assert main(["train", "--resume", str(out), "--set", "optimizer.decay=0.1",
                 "--set", "optimizer.momentum=0.5", "--batch-size", "8",
                 "--max-iter", "2"]) == 0
    saved = load_checkpoint(out / "last.pt")
    assert saved["state"]["iteration"] == 2
    groups = saved["optimizer"]["param_groups"]
    assert [g["momentum"] for g in groups] == [0.5, 0.5]
    # darknet's decay * batch, on the convolution weights only
    assert groups[0]["weight_decay"] == pytest.approx(0.1 * 8)
    assert len(groups[0]["params"]) == conv_weight_count(micro_cfg)
    assert groups[1]["weight_decay"] == 0.0
    assert saved["config"]["optimizer"]["momentum"] == 0.5
    assert saved["config"]["optimizer"]["decay"] == 0.1


# --- a malformed COCO annotation is skipped by the metric too ----------------------------

def test_coco_annotation_without_image_id_is_left_out_of_the_ground_truth(tmp_path) -> None:
    path = write_coco(tmp_path / "coco")
    data = json.loads(path.read_text())
    good = len(data["annotations"])
    data["annotations"] += [
        {"id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]},  # no image_id
        {"id": 100, "image_id": [1], "category_id": 1, "bbox": [1, 2, 3, 4]},  # not an id
        ["not", "an", "object"],
    ]
    path.write_text(json.dumps(data))

    dataset = CocoDataset(path)
    messages = list(dataset.problems)
    assert len(messages) == 3, messages
    assert f"{path}: annotation #{good} (id 99): malformed (KeyError: 'image_id')" in messages[0]
    assert f"annotation #{good + 1} (id 100): malformed (TypeError" in messages[1]
    assert f"annotation #{good + 2} (id #{good + 2}): malformed (TypeError" in messages[2]
    assert len(dataset) == 4  # every image kept: no annotation names one of them

    truth = dataset.ground_truth()
    assert [a["id"] for a in truth["annotations"]] == list(range(1, good + 1))
    assert [im["id"] for im in truth["images"]] == [1, 2, 3, 4]

    # The metric is the clean dataset's: the same ground truth, the same 12 numbers.
    clean = CocoDataset(write_coco(tmp_path / "clean"))
    assert truth["annotations"] == clean.ground_truth()["annotations"]
    torch.manual_seed(0)
    model = build_model(parse_cfg_text(MICRO3_CFG))
    at_64 = DetectOptions.for_evaluation(img_size=64)
    metrics = evaluate(model, dataset, at_64, model_names=NAMES, progress=False)
    reference = evaluate(model, clean, at_64, model_names=NAMES, progress=False)
    assert metrics["images"] == reference["images"] == 4
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"):
        assert metrics[key] == reference[key], key


# --- bad config values are one clear error -----------------------------------------------

BAD_VALUES = {
    "img_size>max": (["--img-size", "8192"], "data.img_size must be at most 4096"),
    "log_interval": (["--set", "train.log_interval=0"], "train.log_interval must be >= 1, got 0"),
    "momentum<0": (["--set", "optimizer.momentum=-1"],
                   "optimizer.momentum must be >= 0 and < 1, got -1.0"),
    "momentum=1": (["--set", "optimizer.momentum=1"],
                   "optimizer.momentum must be >= 0 and < 1, got 1.0"),
    "lr<0": (["--set", "optimizer.lr=-1"], "optimizer.lr must be a number > 0, got -1.0"),
    "lr=0": (["--set", "optimizer.lr=0"], "optimizer.lr must be a number > 0, got 0.0"),
    "lr=nan": (["--set", "optimizer.lr=.nan"], "optimizer.lr must be a number > 0, got nan"),
    "decay": (["--set", "optimizer.decay=-0.1"], "optimizer.decay must be a number >= 0"),
    "device": (["--set", "train.device=gpu"], "train.device gpu is not a device"),
    "--device": (["--device", "cuda:x"], "train.device cuda:x is not a device"),
    "--seed": (["--seed", "-1"], "train.seed must be >= 0, got -1"),
    "--workers": (["--set", "train.workers=-1"], "train.workers is a number of loader processes "
                  ">= 0 or 'auto', got -1"),
    "--max-iter": (["--max-iter", "0"], "schedule.max_iter must be >= 1, got 0"),
    "--eval-interval": (["--eval-interval", "-1"], "train.eval_interval must be >= 0, got -1"),
    "checkpoint_interval": (["--set", "train.checkpoint_interval=-5"],
                            "train.checkpoint_interval must be >= 0, got -5"),
    "burn_in": (["--set", "schedule.burn_in=-1"], "schedule.burn_in values are iterations, or "
                "fractions of the run's length below 1; got -1"),
    "multiscale.interval": (["--set", "multiscale.interval=-1"],
                            "multiscale.interval must be >= 0, got -1"),
    "max_nonfinite": (["--set", "train.max_nonfinite=0"],
                      "train.max_nonfinite must be >= 1, got 0"),
    "time_limit": (["--set", "train.time_limit=-1"], "train.time_limit must be a number of "
                   "seconds >= 0"),
    "max_labels": (["--set", "data.max_labels=0"], "data.max_labels must be >= 1, got 0"),
    "freeze": (["--set", "model.freeze=-1"], "model.freeze must be >= 0, got -1"),
}


@pytest.mark.parametrize(("args", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_config_value_is_one_clear_error(args, message, tmp_path, capsys) -> None:
    code = main(["train", "--weights", "none", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("yolov3 train: error:")]
    assert len(errors) == 1, err
    assert message in errors[0]


@pytest.mark.parametrize("bad", ["augment.jitter=1.5", "multiscale.min_size=100",
                                 "model.anchors=10,13", "augment.flip=-1"])
def test_a_bad_value_stops_before_data_model_or_weights_are_touched(bad, tmp_path,
                                                                    capsys) -> None:
    # Neither the dataset nor the weights exist: the config error must come first.
    code = main(["train", "--data", str(tmp_path / "no-such-dataset"), "--weights",
                 str(tmp_path / "no-such.weights"), "--out", str(tmp_path / "out"),
                 "--set", bad])
    err = capsys.readouterr().err
    assert code == 1
    assert bad.split("=")[0] in err and "no-such" not in err


def test_boundary_values_are_accepted() -> None:
    config = load_config(overrides=[
        "train.log_interval=1", "optimizer.momentum=0", "optimizer.decay=0", "train.seed=0",
        "train.workers=0", "train.eval_interval=0", "train.checkpoint_interval=0",
        "schedule.burn_in=0", "schedule.max_iter=1", "multiscale.interval=0",
        "train.time_limit=0", "train.device=cpu", "optimizer.lr=1e-9",
    ])
    assert (config.optimizer.momentum, config.train.device) == (0.0, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_device_this_machine_lacks_is_an_error_when_the_config_loads() -> None:
    with pytest.raises(ConfigError, match=r"train\.device cuda:1 was asked for but no CUDA GPU"):
        load_config(overrides=["train.device=cuda:1"])


# --- --config on resume -----------------------------------------------------------------

def test_config_file_changes_the_saved_config_before_the_options(tmp_path) -> None:
    saved = load_config(overrides=["optimizer.momentum=0.8", "optimizer.batch=32",
                                   "schedule.max_iter=10"]).to_dict()
    file = tmp_path / "more.yaml"
    file.write_text("optimizer:\n  momentum: 0.7\n  decay: 0.002\nschedule:\n  max_iter: 20\n")
    config = load_config(file, ["schedule.max_iter=30"], saved=(saved, "last.pt"))
    assert config.optimizer.batch == 32  # saved
    assert (config.optimizer.momentum, config.optimizer.decay) == (0.7, 0.002)  # the file
    assert config.schedule.max_iter == 30  # the command line wins


def test_resume_applies_the_config_file(micro_cfg, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(train_args(micro_cfg, out, 1)) == 0
    file = tmp_path / "more.yaml"
    file.write_text("optimizer:\n  momentum: 0.7\n  decay: 0.002\nschedule:\n  max_iter: 2\n")
    assert main(["train", "--resume", str(out), "--config", str(file),
                 "--set", "optimizer.decay=0.003"]) == 0
    saved = load_checkpoint(out / "last.pt")
    assert saved["state"]["iteration"] == 2  # the file's max_iter
    opt = saved["config"]["optimizer"]
    assert (opt["momentum"], opt["decay"], opt["batch"]) == (0.7, 0.003, 4)
    groups = saved["optimizer"]["param_groups"]
    assert [g["momentum"] for g in groups] == [0.7, 0.7]
    assert [g["weight_decay"] for g in groups] == [pytest.approx(0.003 * 4), 0.0]


# --- text options stay text --------------------------------------------------------------

@pytest.mark.parametrize("text", ["2024-05-01", "on", "123", "null", "1e3", "[a, b]", "x: y",
                                  "it's \"quoted\"", "C:\\data\\set", "données"])
def test_text_options_are_not_read_as_yaml(text, micro_cfg, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / text).write_text(Path(micro_cfg).read_text())  # --model names this cfg file
    args = build_parser().parse_args([
        "train", "--data", text, "--model", text, "--weights", text,
        "--device", "cpu", "--batch-size", "16", "--max-iter", "5", "--seed", "3"])
    config = load_config(overrides=overrides_from_args(args))
    assert config.data.dataset == text
    assert (config.model.cfg, config.model.weights) == (text, text)
    assert (config.optimizer.batch, config.schedule.max_iter, config.train.seed) == (16, 5, 3)


def test_set_values_as_the_readme_writes_them(tmp_path) -> None:
    """YAML 1.1 reads off/on/yes/no as booleans; a text setting keeps the word, a boolean
    setting takes it as the boolean it means."""
    args = build_parser().parse_args(["train", "--set", "train.amp=off", "--set",
                                      "train.compile=no", "--set", "train.channels_last=on"])
    config = load_config(overrides=overrides_from_args(args))
    assert (config.train.amp, config.train.compile, config.train.channels_last) == (
        "off", False, True)
    file_config = tmp_path / "set-values.yaml"
    file_config.write_text("train:\n  amp: off\n  compile: yes\n")
    config = load_config(file_config)
    assert (config.train.amp, config.train.compile) == ("off", True)


def test_weights_none_is_still_null() -> None:
    args = build_parser().parse_args(["train", "--weights", "None"])
    assert load_config(overrides=overrides_from_args(args)).model.weights is None


def test_dataset_folder_named_like_a_date_trains(micro_cfg, tmp_path, monkeypatch) -> None:
    write_yolo(tmp_path / "2024-05-01")
    monkeypatch.chdir(tmp_path)
    args = train_args(micro_cfg, tmp_path / "out", 1, "--data", "2024-05-01",
                      "--batch-size", "2", "--subdivisions", "1")
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["iterations"] == 1
    # The run records the folder it opened, whatever the working directory of a resume.
    assert load_checkpoint(tmp_path / "out" / "last.pt")["config"]["data"]["dataset"] == str(
        (tmp_path / "2024-05-01").resolve())


def test_a_coco_json_as_both_splits_is_flagged(tmp_path, caplog) -> None:
    from yolov3.train.datasets import open_training_data

    coco = write_coco(tmp_path / "coco")  # one JSON: train and val are the same images
    with caplog.at_level("WARNING", logger="yolov3"):
        train, val = open_training_data(load_config(None, [f"data.dataset={coco}"]))
    assert train.files == val.files
    assert f"{len(val.files)} of the {len(val)} validation images are training images" in \
        caplog.text
    caplog.clear()
    yolo = write_yolo(tmp_path / "yolo")
    yolo.write_text(yolo.read_text().replace("train: images/val", "train: images/train"))
    (yolo.parent / "images" / "val").rename(yolo.parent / "images" / "train")
    (yolo.parent / "images" / "val").mkdir()
    held_out = next((yolo.parent / "images" / "train").iterdir())
    held_out.rename(yolo.parent / "images" / "val" / held_out.name)
    with caplog.at_level("WARNING", logger="yolov3"):
        train, val = open_training_data(load_config(None, [f"data.dataset={yolo}"]))
    assert len(val) == 1 and "training images too" not in caplog.text
