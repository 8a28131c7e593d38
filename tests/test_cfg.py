"""Bad cfg files give errors that name the file, the line and the problem."""

from __future__ import annotations

import pytest

import yolov3
from yolov3.errors import ConfigError
from yolov3.model.cfg import parse_cfg_text

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
