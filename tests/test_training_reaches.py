"""Training reaches an accuracy: the official yolov3-tiny, fine-tuned on four kangaroo photos
(../shared/datasets/kangaroo, one kangaroo each, a class COCO does not have), overfits them
with evaluation on, keeps the best checkpoint and reports both in results.json. And a run with
``train.time_limit`` stops on time, evaluated and saved.

What can fail: the start is measured too (the COCO detector with a fresh one-class head scores
AP50 about 0.4 on these photos: its objectness is kept, its class channel is new), so reaching
AP50 >= 0.9 and AP >= 0.3 needs the updates to be right; the trainer's numbers are checked
against evaluate() of the checkpoints it wrote."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import MICRO3_CFG
from data_factory import write_yolo
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.evaluation import evaluate
from yolov3.inference import DetectOptions
from yolov3.model.network import build_model
from yolov3.weights.checkpoint import load_checkpoint, model_from_checkpoint
from yolov3.weights.load import load_pretrained

PHOTOS = ["00003", "00004", "00007", "00009"]
SIZE = 256
# Augmentation off: the point is to fit these four photos fast, not to generalise.
PLAIN = ["--set", "augment.jitter=0", "--set", "augment.random_placing=false",
         "--set", "augment.hue=0", "--set", "augment.saturation=1",
         "--set", "augment.exposure=1", "--set", "augment.flip=0"]


@pytest.fixture
def four_kangaroos(kangaroo_dir: Path, tmp_path: Path) -> Path:
    """A VOC folder of four photos, each split (train, val) the same four."""
    root = tmp_path / "kangaroo4"
    (root / "images").mkdir(parents=True)
    (root / "annots").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for stem in PHOTOS:
        (root / "images" / f"{stem}.jpg").symlink_to(kangaroo_dir / "images" / f"{stem}.jpg")
        shutil.copy(kangaroo_dir / "annots" / f"{stem}.xml", root / "annots")
    for split in ("train", "val"):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(PHOTOS) + "\n")
    return root


def reevaluate(checkpoint: Path, data: Path) -> dict:
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    dataset = open_dataset(data, "val")
    return evaluate(model, dataset, DetectOptions.for_evaluation(img_size=SIZE),
                    model_names=dataset.names, progress=False)


@pytest.mark.slow  # about 30 s on 2 cores (make test runs slow tests too)
def test_yolov3_tiny_overfits_four_kangaroo_photos(four_kangaroos, tiny_weights, tmp_path,
                                                   capsys) -> None:
    # Where it starts: the trainer's model before its first step (same seed, same loading).
    torch.manual_seed(0)
    start_model = build_model("yolov3-tiny", num_classes=1)
    load_pretrained(start_model, tiny_weights)
    dataset = open_dataset(four_kangaroos, "val")
    assert dataset.names == ["kangaroo"] and len(dataset) == 4
    start = evaluate(start_model, dataset, DetectOptions.for_evaluation(img_size=SIZE),
                     model_names=["kangaroo"], progress=False)
    assert start["AP50"] < 0.6 and start["AP"] < 0.2

    out = tmp_path / "run"
    code = main(["train", "--data", str(four_kangaroos), "--model", "yolov3-tiny",
                 "--weights", str(tiny_weights), "--out", str(out), "--img-size", str(SIZE),
                 "--batch-size", "4", "--subdivisions", "1", "--max-iter", "15",
                 "--workers", "0", "--eval-interval", "5", "--seed", "0",
                 "--set", "multiscale.interval=0", "--set", "schedule.burn_in=3",
                 "--set", "optimizer.lr=0.002", "--set", "model.freeze=8", *PLAIN])
    printed = capsys.readouterr().out
    assert code == 0
    assert re.findall(r"iteration (\d+): val AP", printed) == ["5", "10", "15"]

    results = json.loads((out / "results.json").read_text())
    evals = load_checkpoint(out / "last.pt")["state"]["evals"]
    assert [e["iteration"] for e in evals] == [5, 10, 15]
    # the accuracy reached
    assert results["final"]["AP50"] >= 0.9 and results["final"]["AP"] >= 0.3
    assert results["final"]["AP"] > start["AP"] + 0.2
    # final: the last evaluation; best: the first of the highest AP50, saved as best.pt
    assert results["final"] == {"AP": evals[-1]["AP"], "AP50": evals[-1]["AP50"]}
    top = max(e["AP50"] for e in evals)
    first_top = next(e for e in evals if e["AP50"] == top)
    assert results["best"] == {"AP": first_top["AP"], "AP50": top,
                               "iteration": first_top["iteration"]}
    assert load_checkpoint(out / "best.pt")["state"]["iteration"] == first_top["iteration"]
    # the checkpoints hold the models that scored those numbers
    again = reevaluate(out / "best.pt", four_kangaroos)
    assert (again["AP"], again["AP50"]) == pytest.approx((first_top["AP"], top), abs=1e-6)
    again = reevaluate(out / "last.pt", four_kangaroos)
    assert (again["AP"], again["AP50"]) == pytest.approx(
        (results["final"]["AP"], results["final"]["AP50"]), abs=1e-6)


def test_time_limit_ends_the_run_evaluated_and_saved(tmp_path, capsys) -> None:
    cfg = tmp_path / "micro3.cfg"
    cfg.write_text(MICRO3_CFG)
    data = write_yolo(tmp_path / "data")  # four small images, three classes
    out = tmp_path / "timed"
    limit = 2
    code = main(["train", "--data", str(data), "--model", str(cfg), "--weights", "none",
                 "--out", str(out),
                 "--max-iter", "2000", "--batch-size", "2", "--subdivisions", "1",
                 "--img-size", "64", "--workers", "0", "--eval-interval", "5000",
                 "--set", "multiscale.interval=0", "--set", f"train.time_limit={limit}"])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    n = results["iterations"]
    assert 1 <= n < 2000  # an iteration takes 0.01 to 0.5 s here: 2000 take 20 s or more
    assert f"train.time_limit of {limit:g}" in printed and f"reached at iteration {n}" in printed
    assert limit <= results["wall_time_s"] < limit + 10  # stops within an iteration or so
    state = load_checkpoint(out / "last.pt")["state"]
    assert state["iteration"] == n
    # the stop counts as the last iteration: evaluated (once, there), best.pt written
    assert [e["iteration"] for e in state["evals"]] == [n]
    assert results["final"]["AP50"] == state["evals"][0]["AP50"]
    assert results["best"]["iteration"] == n and (out / "best.pt").is_file()
