"""No command writes over its own inputs: ``refuse_overwriting_inputs`` finds an output that is
an input (the same path however written, a symbolic link, a hard link), and ``export``, ``val``
and ``detect`` refuse such an --out before writing anything, the input left as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MICRO3_CFG
from data_factory import NAMES, write_coco
from yolov3.cli.main import main
from yolov3.errors import YoloError
from yolov3.fileio import refuse_overwriting_inputs
from yolov3.model.cfg import parse_cfg_text
from yolov3.model.network import build_model
from yolov3.weights.darknet import save_darknet_weights


def test_an_output_that_is_an_input_is_refused(tmp_path, monkeypatch) -> None:
    weights = tmp_path / "w" / "best.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(weights)
    os.link(weights, tmp_path / "hard.pt")
    monkeypatch.chdir(tmp_path)
    for out, how in [(weights, ""), ("w/best.pt", ""), ("w/../w/./best.pt", ""),
                     ("link.pt", " (the same file)"), ("hard.pt", " (the same file)")]:
        with pytest.raises(YoloError) as refused:
            refuse_overwriting_inputs([tmp_path / "other.onnx", out],
                                      {"--model": None, "--weights": "w/best.pt"})
        assert str(refused.value) == (f"{Path(out)} is the input --weights w/best.pt{how}: "
                                      "writing it would replace that input; choose another "
                                      "--out")


def test_outputs_that_are_no_input_pass(tmp_path) -> None:
    weights = tmp_path / "best.pt"
    weights.write_bytes(b"weights")
    (tmp_path / "copy.pt").write_bytes(b"weights")  # equal bytes, another file
    refuse_overwriting_inputs([tmp_path / "copy.pt", tmp_path / "new.onnx"],
                              {"--weights": weights, "--model": None})
    # an input that is no file (an official name, a missing path) has nothing to lose
    refuse_overwriting_inputs([tmp_path / "yolov3-tiny"], {"--weights": "yolov3-tiny"})
    refuse_overwriting_inputs([], {"--weights": weights})


@pytest.fixture
def micro_weights(tmp_path) -> dict[str, Path]:
    """The micro network's cfg and darknet weights, as files."""
    cfg = tmp_path / "micro.cfg"
    cfg.write_text(MICRO3_CFG)
    torch.manual_seed(0)
    weights = tmp_path / "micro.weights"
    save_darknet_weights(build_model(parse_cfg_text(MICRO3_CFG)), weights)
    return {"cfg": cfg, "weights": weights}


@pytest.mark.parametrize("out", ["micro.weights", "micro.cfg", "link.weights", "hard.weights"])
def test_export_never_writes_over_its_weights_or_cfg(micro_weights, out, tmp_path,
                                                     capsys) -> None:
    """Before, ``export --out`` onto its own --weights replaced them with the ONNX graph and
    exited 0."""
    (tmp_path / "link.weights").symlink_to(micro_weights["weights"])
    os.link(micro_weights["weights"], tmp_path / "hard.weights")
    before = {p: p.read_bytes() for p in micro_weights.values()}
    code = main(["export", "--model", str(micro_weights["cfg"]), "--weights",
                 str(micro_weights["weights"]), "--img-size", "64", "--out",
                 str(tmp_path / out)])
    err = capsys.readouterr().err
    assert code == 1
    option = "--model" if out.endswith(".cfg") else "--weights"
    assert f"is the input {option} " in err and "choose another --out" in err
    assert {p: p.read_bytes() for p in micro_weights.values()} == before
    # elsewhere it writes
    assert main(["export", "--model", str(micro_weights["cfg"]), "--weights",
                 str(micro_weights["weights"]), "--img-size", "64", "--out",
                 str(tmp_path / "micro.onnx")]) == 0


def test_val_never_writes_over_its_dataset(micro_weights, tmp_path, capsys) -> None:
    """A COCO annotation file named like one of val's reports, in --out: before, val wrote
    its predictions over the ground truth."""
    data = write_coco(tmp_path / "coco").rename(tmp_path / "coco" / "predictions.json")
    before = data.read_bytes()
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n")
    args = ["val", "--data", str(data), "--model", str(micro_weights["cfg"]), "--weights",
            "none", "--names", str(names), "--img-size", "64", "--workers", "0", "--out",
            str(tmp_path / "coco")]
    assert main(args) == 1  # the folder holds what looks like an earlier run's report
    assert "holds an earlier run (predictions.json)" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 1  # and replacing it would delete the input
    assert (f"--overwrite would delete {data}, which this run reads (--data {data})"
            in capsys.readouterr().err)
    assert data.read_bytes() == before


def test_detect_never_writes_over_a_hard_linked_image(micro_weights, photos, tmp_path,
                                                      capsys) -> None:
    """The annotated copy would land on a hard link of the source image in --out: the
    same file, which the old folder check did not see."""
    source = tmp_path / "in" / "coffee.png"
    source.parent.mkdir()
    shutil.copy(photos["coffee"], source)
    (tmp_path / "out").mkdir()
    os.link(source, tmp_path / "out" / "coffee.png")
    before = source.read_bytes()
    code = main(["detect", str(source), "--model", str(micro_weights["cfg"]), "--weights",
                 "none", "--img-size", "64", "--out", str(tmp_path / "out")])
    assert code == 1
    assert f"is the input SOURCE {source} (the same file)" in capsys.readouterr().err
    assert source.read_bytes() == before
    assert not (tmp_path / "out" / "detections.json").exists()


def test_detect_never_writes_over_a_source_video_in_out(micro_weights, tmp_path,
                                                        capsys) -> None:
    """A video named as a source inside --out: its annotated copy, --out/STEM.mp4, is the
    video itself."""
    out = tmp_path / "out"
    out.mkdir()
    video = out / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 48))
    for k in range(3):
        writer.write(np.full((48, 64, 3), 40 * k, np.uint8))
    writer.release()
    before = video.read_bytes()
    args = ["detect", str(video), "--model", str(micro_weights["cfg"]), "--weights", "none",
            "--img-size", "64", "--out", str(out)]
    assert main(args) == 1
    assert f"{video} is the input SOURCE {video}" in capsys.readouterr().err
    assert video.read_bytes() == before
    assert main([*args, "--nosave"]) == 0  # no annotated video: nothing to refuse
    assert video.read_bytes() == before


def test_detect_writes_beside_its_inputs_elsewhere(micro_weights, photos, tmp_path) -> None:
    source = tmp_path / "in" / "coffee.png"
    source.parent.mkdir()
    Image.open(photos["coffee"]).save(source)
    assert main(["detect", str(source), "--model", str(micro_weights["cfg"]), "--weights",
                 "none", "--img-size", "64", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "coffee.png").is_file()
