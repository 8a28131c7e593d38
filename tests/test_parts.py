"""The network's parts (backbone, upsampling network, YOLO layers) and darknet's layer table.

Expected values come from the cfgs and REFERENCE.md by hand, not from the program: Darknet-53 is
a 3x3 conv and five stages of a stride-2 conv plus 1, 2, 8, 8, 4 residual blocks (two convs and
a [shortcut] each), 52 convolutions in layers 0-74; its trainable parameters follow from the size
of darknet53.conv.74 (162,482,580 bytes: a 20-byte header, then float32 weights that include two
running statistics per batch-norm channel).
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch

from yolov3.cli.main import main
from yolov3.model.cfg import builtin_cfg_path, load_cfg, parse_cfg_text
from yolov3.model.network import build_model
from yolov3.model.parts import network_parts
from yolov3.model.summary import layer_table

# Darknet-53's batch-norm channels: the first conv, then per stage the downsampling conv and
# (c/2 + c) per residual block.
DARKNET53_BN_CHANNELS = 32 + sum(c + n * (c // 2 + c) for c, n in
                                 [(64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)])
DARKNET53_PARAMS = (162_482_580 - 20) // 4 - 2 * DARKNET53_BN_CHANNELS


def head_params(in_channels: int) -> int:
    """A head's 1x1 convolution with bias to 3 * (80 + 5) = 255 channels."""
    return in_channels * 255 + 255


def conv_bn(c_in: int, c_out: int, k: int) -> int:
    """A [convolutional] with batch norm: weights plus the norm's scale and shift."""
    return c_in * c_out * k * k + 2 * c_out


def meta_model(cfg):
    with torch.device("meta"):
        return build_model(cfg)


def test_darknet53_reference_numbers() -> None:
    assert DARKNET53_BN_CHANNELS == 17_856
    assert DARKNET53_PARAMS == 40_584_928


def test_yolov3_parts() -> None:
    parts = network_parts(load_cfg("yolov3"))
    assert parts.num_layers == 107
    assert parts.backbone == range(0, 75)
    assert parts.heads == (range(81, 83), range(93, 95), range(105, 107))
    assert parts.head_strides == (32, 16, 8)
    assert parts.strides[74] == 32  # the backbone ends at the stride-32 map
    assert parts.upsampling == (*range(75, 81), *range(83, 93), *range(95, 105))
    assert [parts.part_of(i) for i in (0, 74, 75, 81, 82, 83, 93, 104, 106)] == [
        "backbone", "backbone", "upsampling network", "head 1", "head 1",
        "upsampling network", "head 2", "upsampling network", "head 3"]
    assert [name for name, _ in parts.groups()] == [
        "backbone", "upsampling network", "head 1", "upsampling network", "head 2",
        "upsampling network", "head 3"]
    with pytest.raises(IndexError):
        parts.part_of(107)


def test_yolov3_layer_table() -> None:
    model = meta_model("yolov3")
    assert model.parts == network_parts(model.sections)
    table = layer_table(model, (416, 416))
    assert table.conv_layers == 75
    assert table.params == 61_949_149 == sum(p.numel() for p in model.parameters())
    heads = head_params(1024) + head_params(512) + head_params(256)
    assert table.totals() == {
        "backbone": (52, DARKNET53_PARAMS),
        "upsampling network": (20, 61_949_149 - DARKNET53_PARAMS - heads),
        "heads": (3, heads),
    }
    rows = table.rows
    assert (rows[74].type, rows[74].output) == ("shortcut", (1024, 13, 13))
    assert rows[36].output == (256, 52, 52) and rows[61].output == (512, 26, 26)
    assert [rows[i].output for i in (82, 94, 106)] == [(255, 13, 13), (255, 26, 26),
                                                      (255, 52, 52)]
    assert (rows[1].filters, rows[1].size, rows[1].params) == (64, "3 x 3 / 2", conv_bn(32, 64, 3))
    assert rows[81].params == head_params(1024) and rows[82].params == 0
    assert (rows[85].size, rows[85].output) == ("2x", (256, 26, 26))
    assert (rows[86].sources, rows[86].output) == ((85, 61), (768, 26, 26))
    assert rows[4].sources == (1,)


def test_yolov3_spp() -> None:
    model = meta_model("yolov3-spp")
    parts = model.parts
    assert parts.backbone == range(0, 75)
    assert parts.heads == (range(88, 90), range(100, 102), range(112, 114))
    table = layer_table(model, (608, 608))
    # yolov3 plus one 1x1 512-filter convolution over SPP's concatenation of 4 x 512 channels
    assert table.conv_layers == 76
    assert table.params == 61_949_149 + conv_bn(2048, 512, 1) == 62_998_749
    assert table.params == sum(p.numel() for p in model.parameters())
    assert table.totals()["backbone"] == (52, DARKNET53_PARAMS)
    assert [table.rows[i].size for i in (78, 80, 82)] == ["5 x 5 / 1", "9 x 9 / 1", "13 x 13 / 1"]
    assert table.rows[83].sources == (82, 80, 78, 77)
    assert table.rows[83].output == (2048, 19, 19)


def test_yolov3_tiny() -> None:
    model = meta_model("yolov3-tiny")
    parts = model.parts
    assert parts.backbone == range(0, 13)  # no [shortcut]: up to the 1024-filter conv
    assert parts.heads == (range(15, 17), range(22, 24))
    assert parts.upsampling == (13, 14, 17, 18, 19, 20, 21)
    assert parts.head_strides == (32, 16)
    table = layer_table(model, (416, 416))
    assert (table.rows[12].filters, table.rows[12].output) == (1024, (1024, 13, 13))
    assert table.rows[11].size == "2 x 2 / 1" and table.rows[11].output == (512, 13, 13)
    channels = [3, 16, 32, 64, 128, 256, 512, 1024]
    backbone = sum(conv_bn(a, b, 3) for a, b in itertools.pairwise(channels))
    neck = conv_bn(1024, 256, 1) + conv_bn(256, 512, 3) + conv_bn(256, 128, 1) \
        + conv_bn(128 + 256, 256, 3)
    heads = head_params(512) + head_params(256)
    assert table.totals() == {"backbone": (7, backbone), "upsampling network": (4, neck),
                              "heads": (2, heads)}
    assert table.conv_layers == 13
    assert table.params == backbone + neck + heads == 8_852_366
    assert table.params == sum(p.numel() for p in model.parameters())


def test_custom_micro_cfg(micro_cfg) -> None:
    # conftest's MICRO_CFG: four stride-2 3x3 convs (8, 16, 16, 32 filters), a stride-2 maxpool,
    # head 1 (1x1 conv to 30, [yolo]), a route to layer 3, head 2 (1x1 conv to 30, [yolo]).
    model = meta_model(micro_cfg)
    parts = model.parts
    assert parts.backbone == range(0, 5)  # ends before the first 1x1 conv after the maxpool
    assert parts.heads == (range(5, 7), range(8, 10))
    assert parts.upsampling == (7,)
    assert parts.head_strides == (32, 16)
    table = layer_table(model, (64, 64))
    convs = conv_bn(3, 8, 3) + conv_bn(8, 16, 3) + conv_bn(16, 16, 3) + conv_bn(16, 32, 3)
    assert table.conv_layers == 6
    assert table.params == convs + 2 * (32 * 30 + 30) == 10_404
    assert [r.output for r in table.rows] == [
        (8, 32, 32), (16, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2), (30, 2, 2), (30, 2, 2),
        (32, 4, 4), (30, 4, 4), (30, 4, 4)]


RESIDUAL_CFG = """
[net]
width=64
height=64

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=4
size=1
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky

[shortcut]
from=-3
activation=linear

[convolutional]
batch_normalize=1
filters=8
size=1
pad=1
activation=leaky

[convolutional]
size=1
pad=1
filters=18
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=1
num=3
"""


def test_custom_cfg_with_residual_block() -> None:
    parts = network_parts(parse_cfg_text(RESIDUAL_CFG))
    assert parts.backbone == range(0, 4)  # up to the [shortcut]
    assert parts.upsampling == (4,)
    assert parts.heads == (range(5, 7),)
    assert parts.head_strides == (2,)


ROW = re.compile(r"^\s*(\d+)\s+(\S+).*?(\d+) x +(\d+) x +(\d+)\s*([\d,]*)$")


def explain_layers(capsys, *args: str) -> tuple[str, dict[int, tuple]]:
    assert main(["explain", "layers", *args]) == 0
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m[1])] = (m[2], (int(m[3]), int(m[4]), int(m[5])),
                               int(m[6].replace(",", "") or 0))
    return out, rows


def titles(out: str) -> list[str]:
    return [line for line in out.splitlines()
            if line.startswith(("backbone (", "upsampling network (", "head "))]


def test_cli_yolov3(capsys) -> None:
    out, rows = explain_layers(capsys)
    assert out.splitlines()[0] == "yolov3: 107 layers, input 416 x 416"
    assert titles(out) == [
        "backbone (layers 0-74)", "upsampling network (layers 75-80)",
        "head 1: YOLO layer, stride 32 (layers 81-82)", "upsampling network (layers 83-92)",
        "head 2: YOLO layer, stride 16 (layers 93-94)", "upsampling network (layers 95-104)",
        "head 3: YOLO layer, stride 8 (layers 105-106)"]
    assert sorted(rows) == list(range(107))
    assert rows[74] == ("res", (1024, 13, 13), 0)
    assert rows[81] == ("conv", (255, 13, 13), head_params(1024))
    assert rows[105] == ("conv", (255, 52, 52), head_params(256))
    assert sum(params for _, _, params in rows.values()) == 61_949_149
    assert sum(kind == "conv" for kind, _, _ in rows.values()) == 75
    assert f"backbone: 52 convolutional layers, {DARKNET53_PARAMS:,} parameters" in out
    assert out.splitlines()[-1] == "total: 75 convolutional layers, 61,949,149 parameters"


def test_cli_tiny_and_spp_sizes(capsys) -> None:
    out, rows = explain_layers(capsys, "--model", "yolov3-tiny", "--img-size", "320")
    assert titles(out)[0] == "backbone (layers 0-12)"
    assert rows[12] == ("conv", (1024, 10, 10), conv_bn(512, 1024, 3))
    assert rows[23][1] == (255, 20, 20)
    assert out.splitlines()[-1] == "total: 13 convolutional layers, 8,852,366 parameters"
    out, rows = explain_layers(capsys, "--model", "yolov3-spp", "--img-size", "608")
    assert rows[83][1] == (2048, 19, 19)
    assert out.splitlines()[-1] == "total: 76 convolutional layers, 62,998,749 parameters"


def test_cli_custom_cfg(capsys, micro_cfg) -> None:
    out, rows = explain_layers(capsys, "--model", str(micro_cfg), "--img-size", "64")
    assert out.splitlines()[0] == "micro: 10 layers, input 64 x 64"
    assert titles(out) == ["backbone (layers 0-4)", "head 1: YOLO layer, stride 32 (layers 5-6)",
                           "upsampling network (layer 7)",
                           "head 2: YOLO layer, stride 16 (layers 8-9)"]
    assert rows[7] == ("route", (32, 4, 4), 0)
    assert out.splitlines()[-1] == "total: 6 convolutional layers, 10,404 parameters"


def test_cli_rejects_a_bad_size(capsys) -> None:
    assert main(["explain", "layers", "--img-size", "100"]) == 1
    assert "--img-size 100 is not a multiple of 32" in capsys.readouterr().err


MARK = re.compile(r"^# --- (backbone|upsampling network|head \d+)\b.*layers (\d+)-(\d+) ---$")


@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp", "yolov3-tiny"])
def test_packaged_cfgs_mark_their_parts(name: str) -> None:
    """Each part's comment stands just before its first layer and names the layers it spans."""
    lines = builtin_cfg_path(name).read_text().splitlines()
    marks, layer = [], -2  # the first section is [net]
    for line in lines:
        if line.startswith("["):
            layer += 1
            if marks and marks[-1][3] is None:
                marks[-1][3] = layer
        elif m := MARK.match(line):
            marks.append([m[1], int(m[2]), int(m[3]), None])
    assert all(first == at for _, first, _, at in marks)
    parts = network_parts(load_cfg(name))
    assert [(n, range(a, b + 1)) for n, a, b, _ in marks] == parts.groups()
    backbone = next(line for line in lines if line.startswith("# --- backbone"))
    darknet53 = name != "yolov3-tiny"
    assert ("Darknet-53" in backbone) == darknet53
    assert backbone.endswith("layers 0-74 ---" if darknet53 else "layers 0-12 ---")
