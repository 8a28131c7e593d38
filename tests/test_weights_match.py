"""A darknet .weights file given without --model: the packaged network whose float count it
has (yolov3, yolov3-spp, yolov3-tiny, or a backbone: their first layers) is named on one line
and loaded; a file that fits none keeps the error that says where it ends."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import yolov3
from conftest import randomize_bn
from yolov3.cli.main import main
from yolov3.errors import WeightsError
from yolov3.weights.load import load_model, packaged_floats, packaged_network
from yolov3.weights.official import PRETRAINED

HEADER = 20  # version 0.2.0: three int32 and a 64-bit 'seen'


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp", "yolov3-tiny", "darknet53.conv.74",
                                  "yolov3-tiny.conv.15"])
def test_the_official_files_sizes_name_their_networks(name: str) -> None:
    # The byte sizes of darknet's own files, not counted by our code.
    floats = (PRETRAINED[name].size - HEADER) // 4
    assert packaged_floats()[name] == floats
    assert packaged_network(floats) == name


def test_a_count_that_fits_no_packaged_network() -> None:
    assert packaged_network(8_858_734 - 1) is None
    assert packaged_network(0) is None
    assert len(set(packaged_floats().values())) == len(packaged_floats())  # never ambiguous


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random yolov3-tiny saved whole, its first 15 layers (a yolov3-tiny.conv.15), and its
    whole file cut inside a layer."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    model = yolov3.build_model("yolov3-tiny")
    randomize_bn(model)
    yolov3.save_darknet_weights(model, root / "mine.weights")
    torch.save(model.state_dict(), root / "state.pt")
    model.layers = nn.ModuleList(list(model.layers)[:15])
    yolov3.save_darknet_weights(model, root / "backbone.weights")
    whole = (root / "mine.weights").read_bytes()
    (root / "cut.weights").write_bytes(whole[:len(whole) // 2 // 4 * 4])
    Image.fromarray(np.full((48, 64, 3), 127, np.uint8)).save(root / "grey.png")
    return {p.stem: p for p in root.iterdir()}


def test_a_whole_file_loads_as_its_network(files, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="yolov3"):
        model, names = load_model(None, files["mine"])
    assert names is None
    assert [r.getMessage() for r in caplog.records] == [
        "mine.weights holds the 8,858,734 floats of yolov3-tiny: using --model yolov3-tiny"]
    expected = torch.load(files["state"])
    assert model.state_dict().keys() == expected.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_a_backbone_is_named_and_cannot_detect(files, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="yolov3"), pytest.raises(
            WeightsError, match="covers only 9 of the 13 conv layers of yolov3-tiny"):
        load_model(None, files["backbone"])
    assert caplog.records[0].getMessage() == (
        "backbone.weights holds the 7,743,344 floats of yolov3-tiny.conv.15, the first 15 "
        "layers of yolov3-tiny: using --model yolov3-tiny")


def test_a_file_that_fits_none_keeps_its_error(files, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="yolov3"), pytest.raises(
            WeightsError, match="which ends inside conv layer"):
        load_model(None, files["cut"])
    assert not caplog.records


def test_detect_with_weights_alone_says_the_network_and_runs(files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["detect", str(files["grey"]), "--weights", str(files["mine"]), "--img-size",
                 "64", "--out", str(out), "--nosave"]) == 0
    err = capsys.readouterr().err
    assert "mine.weights holds the 8,858,734 floats of yolov3-tiny: using --model yolov3-tiny\n" \
        in err
    assert (out / "detections.json").is_file()
