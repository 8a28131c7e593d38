"""Class names are checked wherever they are read (a dataset YAML, classes.txt and darknet's
.names, COCO's categories, VOC's object names): a name repeated, empty or holding a line break
or a control character is an error naming the class and the file, never a class that reads
back as two, or as none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_factory import coco_json, snapshot, write_coco, write_voc, write_yolo
from yolov3.classes import read_names
from yolov3.cli.main import main
from yolov3.datasets.convert import convert
from yolov3.datasets.open import open_dataset
from yolov3.datasets.problems import MALFORMED
from yolov3.errors import DataError

BAD_NAMES = [  # (names, what the error says)
    (["kangaroo", "kangaroo"], r"'kangaroo' is the name of classes 0 and 1"),
    (["cat", "   "], r"class 1 \('   '\): the name is empty or only spaces"),
    (["cat", ""], r"class 1 \(''\): the name is empty or only spaces"),
    (["kan\ngaroo", "dog"], r"class 0 \('kan\\ngaroo'\): the name holds a line break"),
    (["cat", "d\x00g"], r"class 1 \('d\\x00g'\): the name holds a line break"),
]


@pytest.mark.parametrize(("names", "said"), BAD_NAMES)
def test_names_of_a_dataset_yaml(tmp_path: Path, names: list[str], said: str,
                                 capsys: pytest.CaptureFixture) -> None:
    data = write_yolo(tmp_path / "yolo")
    data.write_text("path: .\nval: images/val\nnames: " + json.dumps(names) + "\n")
    with pytest.raises(DataError, match=f"data.yaml: {said}"):
        open_dataset(data, "val")
    assert main(["data", "check", str(data)]) == 1  # never "no problems" with kangaroo 0
    assert "data.yaml: " in capsys.readouterr().out


@pytest.mark.parametrize(("names", "said"), BAD_NAMES)
def test_names_of_coco_categories(tmp_path: Path, names: list[str], said: str) -> None:
    path = write_coco(tmp_path / "coco")
    data = json.loads(path.read_text())
    for category, name in zip(data["categories"], names, strict=False):
        category["name"] = name
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"instances_val.json: categories: {said}"):
        open_dataset(path)


def test_coco_category_name_that_is_not_text(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "coco")
    data = json.loads(path.read_text())
    data["categories"][1]["name"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"category .*'name' that is text"):
        open_dataset(path)


@pytest.mark.parametrize(("names", "said"), [
    BAD_NAMES[0], (["cat", "   "], "line 2 is blank"),
    (["c\x1bat", "dog"], r"class 0 \('c\\x1bat'\): the name holds a line break")])
def test_names_of_a_voc_classes_file(tmp_path: Path, names: list[str], said: str) -> None:
    root = write_voc(tmp_path / "voc")
    (root / "classes.txt").write_text("\n".join([*names, "zebra"]) + "\n")
    with pytest.raises(DataError, match=f"classes.txt: .*{said}"):
        open_dataset(root, "all")


def test_names_file_blank_lines(tmp_path: Path) -> None:
    names = tmp_path / "obj.names"
    names.write_text("cat\ndog\n\n\n")  # trailing blank lines are no classes
    assert read_names(names) == ["cat", "dog"]
    names.write_text("cat\n\ndog\n")  # darknet reads the blank line as class 1, named ""
    with pytest.raises(DataError, match=r"obj.names: line 2 is blank"):
        read_names(names)
    names.write_text("cat\ncat\n")
    with pytest.raises(DataError, match=r"obj.names: 'cat' is the name of classes 0 and 1"):
        read_names(names)


@pytest.mark.parametrize("name", ["   ", "kan\u2028garoo"])
def test_voc_object_names(tmp_path: Path, name: str) -> None:
    root = write_voc(tmp_path / "voc")
    xml = root / "Annotations" / "1.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", f"<name>{name}</name>", 1))
    ds = open_dataset(root, "all")  # names from the objects: the file is malformed
    assert ds.names == ["cat", "dog", "zebra"] and len(ds) == 3
    assert ds.problems.kinds == [MALFORMED]
    assert "1.xml: object 1: its <name>" in ds.problems.messages[0]


def test_a_name_with_a_line_break_is_refused_before_converting(tmp_path: Path) -> None:
    """The conversion that reported success and wrote a VOC set which read back with 9 of 16
    images lost: its source is refused now, and nothing is written."""
    data = coco_json()
    data["categories"][0]["name"] = "c\nat"
    (tmp_path / "src" / "images").mkdir(parents=True)
    path = write_coco(tmp_path / "src")
    path.write_text(json.dumps(data))
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match=r"class 0 \('c\\nat'\)"):
        convert(path, "voc", tmp_path / "voc")
    assert snapshot(tmp_path) == before
