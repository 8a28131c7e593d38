"""The network: architectures from cfg, parameter counts, output layout, non-square inputs."""

from __future__ import annotations

import pytest
import torch

import yolov3
from yolov3.model import Decoded
from yolov3.model.cfg import builtin_cfg_path, load_cfg, parse_cfg_text


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_yolov3_has_darknet_parameter_count_and_rows() -> None:
    model = yolov3.build_model("yolov3").eval()
    assert trainable(model) == 61_949_149
    with torch.no_grad():
        out = Decoded(model)(torch.rand(1, 3, 416, 416))
    assert out.shape == (1, 10_647, 85)
    assert [len(m.mask) for m in model.yolo_layers] == [3, 3, 3]
    assert [m.mask for m in model.yolo_layers] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


@pytest.mark.parametrize(
    ("name", "rows", "params"),
    [("yolov3-tiny", 3 * (13 * 13 + 26 * 26), 8_852_366), ("yolov3-spp", 10_647, 62_998_749)],
)
def test_other_builtin_architectures(name: str, rows: int, params: int) -> None:
    model = yolov3.build_model(name).eval()
    assert trainable(model) == params
    with torch.no_grad():
        assert Decoded(model)(torch.rand(1, 3, 416, 416)).shape == (1, rows, 85)


def test_training_mode_returns_raw_maps_per_layer() -> None:
    model = yolov3.build_model("yolov3-tiny").train()
    raw = model(torch.rand(2, 3, 320, 320))
    assert [tuple(r.shape) for r in raw] == [(2, 3, 10, 10, 85), (2, 3, 20, 20, 85)]


def test_classes_and_anchors_override_the_cfg() -> None:
    anchors = [(10.0, 10.0), (20.0, 30.0), (40.0, 40.0), (60, 90), (100, 100), (200, 150)]
    model = yolov3.build_model("yolov3-tiny", num_classes=3, anchors=anchors).train()
    assert model.num_classes == 3
    assert model.anchors.tolist() == [list(map(float, a)) for a in anchors]
    raw = model(torch.rand(1, 3, 416, 416))
    assert raw[0].shape == (1, 3, 13, 13, 8)


def test_non_square_input_from_cfg(tmp_path) -> None:
    text = builtin_cfg_path("yolov3").read_text()
    assert "width=608" in text and "height=608" in text
    text = text.replace("height=608", "height=352")
    cfg = tmp_path / "wide.cfg"
    cfg.write_text(text)
    model = yolov3.build_model(cfg).eval()
    assert (model.info.width, model.info.height) == (608, 352)
    with torch.no_grad():
        out = Decoded(model)(torch.rand(1, 3, 352, 608))
    assert out.shape == (1, 3 * (11 * 19 + 22 * 38 + 44 * 76), 85)
    # The last row of the 1/32 layer is anchor 2 at the bottom-right cell (x=18, y=10).
    row = out[0, 3 * 11 * 19 - 1]
    assert 18 * 32 <= row[0] <= 19 * 32 and 10 * 32 <= row[1] <= 11 * 32


def test_decoding_follows_darknet_and_row_order() -> None:
    """Rows go layer, anchor, y, x; cx = (sigmoid(tx) + i) * stride, w = exp(tw) * anchor_w."""
    model = yolov3.build_model("yolov3-tiny").eval()
    x = torch.rand(1, 3, 416, 256)
    with torch.no_grad():
        raw = model(x)
        out = Decoded(model)(x)
    layer = model.yolo_layers[1]  # 1/16: a 26 x 16 map
    first = 3 * 13 * 8
    a, j, i = 2, 5, 11
    r = raw[1][0, a, j, i]
    row = out[0, first + (a * 26 + j) * 16 + i]
    anchor = layer.anchors[layer.mask[a]]
    expected = torch.cat([
        (torch.sigmoid(r[0:1]) + i) * 16, (torch.sigmoid(r[1:2]) + j) * 16,
        torch.exp(r[2:4]) * anchor, torch.sigmoid(r[4:]),
    ])
    torch.testing.assert_close(row, expected)


def test_builtin_cfgs_parse_with_their_yolo_settings() -> None:
    tiny = load_cfg("yolov3-tiny")
    masks = [s.get_ints("mask") for s in tiny if s.type == "yolo"]
    assert masks == [[3, 4, 5], [1, 2, 3]]  # the 2018-05 cfg the released weights used
    sections = parse_cfg_text("[net]\nwidth=32\n[convolutional]\nfilters=3\n")
    assert sections[1].get_int("filters") == 3


def test_frozen_layers_get_no_gradient_and_keep_batch_norm_statistics() -> None:
    model = yolov3.build_model("yolov3-tiny", num_classes=2)
    model.freeze(8)
    model.train()
    assert not any(m.training for m in model.layers[:8]) and model.layers[8].training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    raw = model(torch.rand(2, 3, 96, 96))
    sum(r.sum() for r in raw).backward()
    frozen = [p for m in model.layers[:8] for p in m.parameters()]
    assert all(p.grad is None and not p.requires_grad for p in frozen)
    assert model.layers[8].conv.weight.grad is not None
    after = model.state_dict()
    assert torch.equal(before["layers.0.bn.running_mean"], after["layers.0.bn.running_mean"])
    assert not torch.equal(before["layers.8.bn.running_mean"], after["layers.8.bn.running_mean"])


def test_frozen_batch_norm_statistics_normalise_with_the_loaded_ones_and_still_learn() -> None:
    model = yolov3.build_model("yolov3-tiny", num_classes=2)
    model.freeze(2)
    model.freeze_bn()
    model.train()
    bn = model.layers[8].bn
    assert not bn.training and model.layers[8].training  # the layer trains, its batch norm not
    with torch.no_grad():  # loaded statistics that are not the batch's
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 96, 96)
    raw = model(x)
    sum(r.sum() for r in raw).backward()
    after = model.state_dict()
    for name in before:
        if name.endswith(("running_mean", "running_var")):
            assert torch.equal(before[name], after[name]), name
    assert bn.weight.grad is not None and bn.bias.grad is not None  # scale and shift learn
    assert model.layers[2].conv.weight.grad is not None
    # training-mode outputs equal evaluation-mode outputs: the same statistics normalise both
    with torch.no_grad():
        trained = model(x)
        model.eval()
        evaluated = model(x)
    for a, b in zip(trained, evaluated, strict=True):
        torch.testing.assert_close(a, b)
    model.freeze_bn(False)
    model.train()
    assert bn.training and not model.layers[0].training  # the first 2 layers stay frozen
