"""Non-square network inputs (``data.aspect``, ``--img-size WxH``): their shapes, the training
stream and evaluation at them, ``auto`` measured on the training images and kept on resume, and
the evaluation input a checkpoint carries for val and export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import onnx
import pytest
import torch
from torchvision.ops import box_convert, box_iou

from data_factory import write_photo_dataset, write_yolo
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.errors import ConfigError
from yolov3.inputs.loader import MultiScale, TrainBatchSampler, input_shape, make_train_loader
from yolov3.train.config import load_config
from yolov3.train.datasets import median_aspect
from yolov3.weights.checkpoint import load_checkpoint


def test_input_shapes_keep_the_longer_side_and_round_the_other_to_the_stride() -> None:
    assert input_shape(416) == (416, 416)
    assert input_shape(384, 1.5) == (256, 384)  # landscape: (height, width)
    assert input_shape(384, 1 / 1.5) == (384, 256)  # portrait
    assert input_shape(416, 1.5) == (288, 416)  # 277.3 -> 288
    assert input_shape(320, 1.5) == (224, 320)  # 213.3 -> 224
    assert input_shape(64, 4.0) == (32, 64)  # at least one stride
    assert input_shape(608, 16 / 9) == (352, 608)


def test_multiscale_draws_the_same_sizes_at_the_aspect() -> None:
    square, wide = MultiScale(320, 448, 10), MultiScale(320, 448, 10, aspect=1.5)
    for iteration in range(0, 400, 10):
        side = square.size_at(3, iteration)
        assert square.shape_at(3, iteration) == (side, side)
        h, w = wide.shape_at(3, iteration)
        assert w == side and h % 32 == 0 and abs(h - side / 1.5) <= 16
    sampler = TrainBatchSampler(20, 4, multiscale=wide, seed=3)
    assert sampler.input_hw(0) == wide.shape_at(3, 0)


def test_a_wide_training_batch_holds_its_images_and_boxes(tmp_path: Path) -> None:
    write_yolo(tmp_path)
    data = open_dataset(tmp_path / "data.yaml", "train")
    loader = make_train_loader(data, 4, multiscale=MultiScale(128, 128, aspect=1.5), seed=0,
                               max_iterations=1)
    images, targets, info = next(iter(loader))
    assert images.shape == (4, 3, 96, 128) and info.input_hw == (96, 128)
    boxes = torch.cat(list(targets))
    assert len(boxes) and bool(((boxes[:, 1:] >= 0) & (boxes[:, 1:] <= 1)).all())


def test_the_config_takes_a_ratio_or_auto_and_names_a_bad_value() -> None:
    assert load_config().data.aspect == 1.0  # darknet's square
    assert load_config().data.input_hw == (416, 416)
    config = load_config(overrides=["data.aspect=1.5", "data.img_size=384"])
    assert config.data.aspect == 1.5 and config.data.input_hw == (256, 384)
    assert config.multiscale.build(384, 1.5).shape_at(0, 0)[1] in config.multiscale.build(
        384).sizes
    assert load_config(overrides=["data.aspect=auto"]).data.aspect == "auto"
    for bad in ("wide", "10", "0", "[1, 2]"):
        with pytest.raises(ConfigError, match=r"data\.aspect"):
            load_config(overrides=[f"data.aspect={bad}"])


def test_median_aspect_reads_the_headers_and_leaves_out_unreadable_images(
        tmp_path: Path) -> None:
    write_yolo(tmp_path)  # 64x48, 80x60, 40x50, 90x30
    (tmp_path / "images" / "val" / "5.png").write_bytes(b"not a picture")
    data = open_dataset(tmp_path / "data.yaml", "train")
    assert len(data) == 5
    assert median_aspect(data) == 1.33
    # three evenly spaced: 64x48, 40x50 and the unreadable one, left out
    assert median_aspect(data, limit=3) == round((64 / 48 + 40 / 50) / 2, 2)
    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "images" / "1.png").write_bytes(b"not a picture")
    (broken / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [cat]\n")
    assert median_aspect(open_dataset(broken / "data.yaml", "train")) == 1.0  # none readable


def test_training_at_auto_aspect_records_it_evaluates_and_resumes(micro_cfg: Path,
                                                                  tmp_path: Path,
                                                                  caplog, capsys) -> None:
    write_yolo(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "--model", str(micro_cfg), "--weights", "none", "--out", str(out),
            "--data", str(tmp_path / "data" / "data.yaml"), "--batch-size", "4",
            "--subdivisions", "1", "--img-size", "128", "--workers", "0",
            "--set", "multiscale.min_size=96", "--set", "multiscale.max_size=128",
            "--set", "data.aspect=auto", "--set", "schedule.burn_in=1",
            "--set", "train.log_interval=1"]
    with caplog.at_level("INFO", logger="yolov3"):
        assert main([*args, "--max-iter", "2", "--eval-interval", "2"]) == 0
    assert "data.aspect auto: 1.33 (the training images' median width / height): inputs of " \
           "128x96 at data.img_size" in caplog.text
    saved = load_checkpoint(out / "last.pt")
    assert saved["config"]["data"]["aspect"] == 1.33
    assert [e["iteration"] for e in saved["state"]["evals"]] == [2]
    assert re.search(r"\| (96x64|128x96)px", capsys.readouterr().err)  # the progress bar
    assert main(["train", "--resume", str(out), "--max-iter", "3"]) == 0
    saved = load_checkpoint(out / "last.pt")
    assert saved["config"]["data"]["aspect"] == 1.33
    # the evaluation input is the network's [net] size, in the checkpoint and in model.cfg
    for cfg in (saved["cfg"], (out / "model.cfg").read_text()):
        assert re.search(r"^width=128$", cfg, re.M) and re.search(r"^height=96$", cfg, re.M)
    # ... which val and export take when --img-size is not given
    capsys.readouterr()
    assert main(["val", "--data", str(tmp_path / "data" / "data.yaml"), "--weights",
                 str(out / "last.pt"), "--out", str(tmp_path / "val")]) == 0
    assert "images, input 128x96, at" in capsys.readouterr().out
    assert main(["export", "--weights", str(out / "last.pt"), "--out",
                 str(tmp_path / "m.onnx")]) == 0
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 96, 128]
    # ... and so do the explain pictures; --img-size WxH overrides it
    image = tmp_path / "data" / "images" / "val" / "1.png"
    for given, grid in (([], "4x3 cells"), (["--img-size", "64x96"], "2x3 cells")):
        capsys.readouterr()
        assert main(["explain", "channels", str(image), "--weights", str(out / "last.pt"),
                     "--size", "200", "--out", str(tmp_path / "c.png"), *given]) == 0
        assert f"YOLO layer 0: stride 32, {grid}" in capsys.readouterr().out


def test_val_at_width_x_height_finds_what_the_square_input_finds(
        tiny_weights: Path, photos: dict[str, Path], tmp_path: Path, capsys) -> None:
    data = write_photo_dataset(tmp_path / "coco", photos, cup_id=47, motorbike_id=4)
    boxes = {}
    for size in ("416", "416x320"):
        out = tmp_path / size
        given = ["--img-size", size] if size != "416" else []  # darknet weights: 416
        assert main(["val", "--data", str(data), "--model", "yolov3-tiny", "--weights",
                     str(tiny_weights), "--out", str(out), *given]) == 0
        height = size.split("x")[-1]
        assert f"images, input 416x{height}, at" in capsys.readouterr().out
        assert json.loads((out / "metrics.json").read_text())["AP50"] == pytest.approx(1.0)
        predictions = json.loads((out / "predictions.json").read_text())
        best = sorted(predictions, key=lambda p: p["score"])  # the top box of each object
        boxes[size] = {(p["image_id"], p["category_id"]): p["bbox"] for p in best}
    for key in ((1, 47), (2, 4)):  # the same scale: only the padding around the photo differs
        square, wide = (box_convert(torch.tensor([boxes[s][key]]), "xywh", "xyxy")
                        for s in ("416", "416x320"))
        assert box_iou(square, wide).item() > 0.85, key  # 0.93 and 0.89
    bad = ["val", "--data", str(data), "--model", "yolov3-tiny", "--weights", str(tiny_weights),
           "--out", str(tmp_path / "bad"), "--img-size"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main([*bad, "416x"])
    assert exit_.value.code == 2
    assert "argument --img-size: expected a size (416) or width x height (384x256), got " \
           "'416x'" in capsys.readouterr().err
    assert main([*bad, "416x300"]) == 1
    assert "--img-size 300 is not a multiple of 32" in capsys.readouterr().err
