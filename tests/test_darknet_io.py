"""Darknet weights files: exact round trips, both header versions, partial and bad files."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

import yolov3
from conftest import randomize_bn
from yolov3.errors import WeightsError
from yolov3.weights.darknet import count_floats, load_darknet_weights

TINY_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"


def test_real_tiny_weights_save_back_byte_identical(tiny_weights, tmp_path) -> None:
    model = yolov3.from_darknet("yolov3-tiny", tiny_weights)
    assert model.header_version == (0, 2, 0) and model.seen == 32_013_312
    out = tmp_path / "again.weights"
    yolov3.save_darknet_weights(model, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == TINY_SHA256


def test_header_without_weights_is_an_error(tiny_weights, tmp_path) -> None:
    path = tmp_path / "header.weights"
    path.write_bytes(tiny_weights.read_bytes()[:20])  # version (0, 2, 0) and a 64-bit seen
    with pytest.raises(WeightsError, match="holds a header and no weights"):
        load_darknet_weights(yolov3.build_model("yolov3-tiny"), path)


def test_old_header_with_int32_seen_round_trips(tmp_path) -> None:
    model = yolov3.build_model("yolov3-tiny")
    randomize_bn(model)
    model.header_version, model.seen = (0, 1, 0), 12345
    path = tmp_path / "old.weights"
    yolov3.save_darknet_weights(model, path)
    data = path.read_bytes()
    assert len(data) == 16 + 4 * count_floats(model)
    assert np.frombuffer(data, np.int32, 4).tolist() == [0, 1, 0, 12345]
    again = yolov3.build_model("yolov3-tiny")
    load_darknet_weights(again, path)
    assert again.seen == 12345
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_backbone_file_loads_the_layers_it_covers(tmp_path, caplog) -> None:
    """A darknet53.conv.74-like file: the first 52 convolutions (74 layers) of yolov3."""
    full = yolov3.build_model("yolov3")
    randomize_bn(full, seed=1)
    path = tmp_path / "yolov3.weights"
    yolov3.save_darknet_weights(full, path)
    assert path.stat().st_size == 248_007_048  # the official yolov3.weights size
    convs = [m for m in full.layers[:74] if isinstance(m, yolov3.model.layers.ConvBlock)]
    assert len(convs) == 52
    backbone_floats = sum(p.numel() for c in convs for p in c.state_dict().values()
                          if p.dtype == torch.float32)
    backbone = tmp_path / "darknet53.conv.74"
    backbone.write_bytes(path.read_bytes()[: 20 + 4 * backbone_floats])
    assert backbone.stat().st_size == 162_482_580  # the official darknet53.conv.74 size
    model = yolov3.build_model("yolov3")
    head_before = model.layers[-2].conv.weight.clone()
    with caplog.at_level("INFO", logger="yolov3"):
        report = load_darknet_weights(model, backbone)
    assert (report.layers_loaded, report.layers_total) == (52, 75)
    assert "loaded 52 of 75 conv layers" in caplog.text
    torch.testing.assert_close(model.layers[73].conv.weight, full.layers[73].conv.weight)
    torch.testing.assert_close(model.layers[-2].conv.weight, head_before)


def test_truncated_file_states_expected_and_actual_counts(tiny_weights, tmp_path) -> None:
    bad = tmp_path / "cut.weights"
    bad.write_bytes(tiny_weights.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError) as err:
        yolov3.from_darknet("yolov3-tiny", bad)
    message = str(err.value)
    assert "249,995 floats" in message and "8,858,734" in message and str(bad) in message


def test_oversized_file_or_wrong_cfg_is_an_error(tiny_weights, tmp_path) -> None:
    big = tmp_path / "big.weights"
    big.write_bytes(tiny_weights.read_bytes() + b"\0" * 400)
    expected = "holds 8,858,834 floats but the model expects 8,858,734"
    with pytest.raises(WeightsError, match=expected):
        yolov3.from_darknet("yolov3-tiny", big)
    with pytest.raises(WeightsError, match="8,858,734 floats"):
        yolov3.from_darknet("yolov3-tiny", tiny_weights, num_classes=20)


def test_not_a_weights_file(tmp_path) -> None:
    junk = tmp_path / "junk.weights"
    junk.write_bytes(b"hello")
    with pytest.raises(WeightsError, match="too short for a darknet header"):
        yolov3.from_darknet("yolov3-tiny", junk)
    with pytest.raises(WeightsError, match="neither an existing weights file nor a known name"):
        yolov3.from_darknet("yolov3-tiny", tmp_path / "missing.weights")
