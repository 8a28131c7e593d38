"""Bad cfg files give errors that name the file, the line and the problem."""

from __future__ import annotations

import pytest

import yolov3
from yolov3.errors import ConfigError
from yolov3.model.cfg import load_cfg, parse_cfg_text, unread_training_keys

GOOD = "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n" \
       "[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\nclasses=1\n"


def test_minimal_cfg_builds(tmp_path) -> None:
    cfg = tmp_path / "m.cfg"
    cfg.write_text(GOOD)
    assert yolov3.build_model(cfg).num_classes == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("[yolo]", "[region]"), "m.cfg, line 8: unknown section [region]"),
        (GOOD.replace("filters=18", "filter=18"), "m.cfg, line 5: unknown key 'filter'"),
        (GOOD.replace("filters=18", "filters=eighteen"), "line 4, [convolutional] key 'filters'"),
        (GOOD.replace("filters=18", "filters=17"), "len(mask) * (5 + classes) = 18"),
        ("[convolutional]" + GOOD.split("[convolutional]")[1], "must start with a [net] section"),
        (GOOD.replace("size=1", "size 1"), "line 6: expected 'key=value'"),
        (GOOD + "[route]\nlayers=-9\n", "refers to layer -9"),
        (GOOD.replace("[yolo]", "[shortcut]\nfrom=-1\nactivation=swish\n[yolo]"),
         "line 8, [shortcut] key 'activation': unknown activation 'swish'"),
        (GOOD.replace("[convolutional]", "[convolutional]\nfilters=4\nsize=3\nstride=2\n"
                      "[convolutional]\nfilters=4\nsize=3\nstride=2\n[route]\n"
                      "layers=-1,-2\n[convolutional]", 1),
         "line 12, [route] key 'layers': joins maps of different sizes (layer: stride 1: 4, "
         "0: 2)"),
    ],
)
def test_bad_cfg_errors_name_file_and_line(tmp_path, text: str, message: str) -> None:
    cfg = tmp_path / "m.cfg"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        yolov3.build_model(cfg)
    assert message in str(err.value)
    assert str(cfg) in str(err.value)


def test_unknown_name_or_missing_file() -> None:
    with pytest.raises(ConfigError, match="neither a built-in architecture"):
        yolov3.build_model("yolov9")


def test_comments_and_spacing_are_accepted() -> None:
    sections = parse_cfg_text("# c\n[net]\n width = 32 # w\n\n[maxpool]\nsize=2\n")
    assert sections[0].get_int("width") == 32


def _shapes(text: str, size: int = 64) -> list[tuple[int, ...]]:
    """The output shape of every layer of a cfg on a (1, 3, size, size) input."""
    import torch

    model = yolov3.build_model(parse_cfg_text(text))
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _a, out: shapes.append(tuple(out.shape)))
             for m in model.layers[:-1]]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return shapes


@pytest.mark.parametrize(("options", "kernel", "side"), [
    ("size=2", 2, 64),  # darknet: stride defaults to 1 and keeps the map (yolov3-tiny's pool)
    ("stride=2", 2, 32),  # size defaults to the stride: a 2x2 pool
    ("size=3\nstride=2", 3, 32),
])
def test_maxpool_defaults_are_darknets(options: str, kernel: int, side: int) -> None:
    text = GOOD.replace("[convolutional]", f"[maxpool]\n{options}\n[convolutional]", 1)
    assert yolov3.build_model(parse_cfg_text(text)).layers[0].pool.kernel_size == kernel
    assert _shapes(text)[0] == (1, 3, side, side)


def test_pad_sets_the_padding_whatever_padding_says() -> None:
    # darknet reads padding, then `if(pad) padding = size/2`
    text = GOOD.replace("[convolutional]", "[convolutional]\nfilters=4\nsize=3\npad=1\n"
                        "padding=0\n[convolutional]", 1)
    assert _shapes(text)[0] == (1, 4, 64, 64)


def test_darknets_training_keys_are_listed_as_not_read() -> None:
    """One rule for the recipe darknet's cfgs carry: accepted, not read, and said so; the
    training config holds darknet's values. ``ignore_thresh`` belongs to the YOLO layer and is
    read."""
    keys = unread_training_keys(load_cfg("yolov3"))
    for key in ("[net] learning_rate", "[net] burn_in", "[net] steps", "[net] scales",
                "[net] batch", "[net] subdivisions", "[net] hue", "[yolo] jitter",
                "[yolo] random", "[yolo] truth_thresh"):
        assert key in keys
    assert not any(k.endswith(("width", "height", "channels", "ignore_thresh")) for k in keys)
    model = yolov3.build_model("yolov3")
    assert [m.ignore_thresh for m in model.yolo_layers] == [0.7, 0.7, 0.7]
    tweaked = load_cfg("yolov3")
    for section in tweaked:
        if section.type == "yolo":
            section.options["ignore_thresh"] = "0.5"
    assert [m.ignore_thresh for m in yolov3.build_model(tweaked).yolo_layers] == [0.5] * 3
    micro = parse_cfg_text("[net]\nwidth=64\nheight=64\n\n[convolutional]\nfilters=18\nsize=1\n"
                           "activation=linear\n\n[yolo]\nmask=0,1,2\nanchors=1,2, 3,4, 5,6\n"
                           "classes=1\n")
    assert unread_training_keys(micro) == []
