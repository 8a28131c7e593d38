"""Where ``yolov3 data convert`` writes: only into an empty or new folder, or over its own
earlier output of the same source (``--overwrite`` for another source's), never inside the
source; and what it wrote is read back and compared with what it converted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from data_factory import IMAGES, coco_json, snapshot, write_coco, write_voc, write_yolo
from yolov3.cli.main import main
from yolov3.datasets.convert import MARKER, convert
from yolov3.datasets.open import open_dataset
from yolov3.errors import DataError

BOXES = sum(len(objects) for _, _, objects in IMAGES)


def count(data: Path, split: str = "val") -> tuple[int, int]:
    ds = open_dataset(data, split)
    assert not ds.problems, ds.problems.messages
    return len(ds), sum(len(ds.annotations(i).boxes) for i in range(len(ds)))


def test_converting_onto_another_dataset_is_refused(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    source = write_coco(tmp_path / "src")
    other = write_yolo(tmp_path / "other").parent
    before = snapshot(other)
    with pytest.raises(DataError, match=r"is not empty .*choose an empty or new --out"):
        convert(source, "yolo", other)
    assert snapshot(other) == before  # its data.yaml and labels untouched, nothing merged
    for extra in ([], ["--overwrite"]):  # --overwrite replaces a conversion, nothing else
        assert main(["data", "convert", str(source), "--to", "yolo", "--out", str(other),
                     *extra]) == 1
        assert "is not empty" in capsys.readouterr().err
        assert snapshot(other) == before


def test_converting_the_same_source_again_replaces_the_earlier_output(tmp_path: Path) -> None:
    source = write_yolo(tmp_path / "src")
    out = tmp_path / "out"
    convert(source, "coco", out)
    assert count(out) == (len(IMAGES), BOXES)
    (source.parent / "images" / "val" / "1.png").unlink()  # the source shrinks
    (source.parent / "labels" / "val" / "1.txt").unlink()
    convert(source, "voc", out)  # the same source, another format: the first output goes
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "Annotations", "JPEGImages", "ImageSets", "classes.txt"])
    assert count(out) == (len(IMAGES) - 1, BOXES - 2)
    marker = json.loads((out / MARKER).read_text())
    assert marker["source"] == str(source.resolve())
    assert "Annotations/2.xml" in marker["files"]


def test_another_sources_conversion_is_replaced_only_with_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = write_coco(tmp_path / "a"), write_voc(tmp_path / "b")
    out = tmp_path / "out"
    convert(first, "yolo", out)
    before = snapshot(out)
    assert main(["data", "convert", str(second), "--to", "yolo", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"holds the conversion of {first.resolve()}" in err and "--overwrite" in err
    assert snapshot(out) == before
    assert main(["data", "convert", str(second), "--to", "yolo", "--out", str(out),
                 "--overwrite"]) == 0
    assert count(out, "train")[0] + count(out, "val")[0] == len(IMAGES)  # b's split, alone
    assert not (out / "images" / "val" / "2.JPG").exists() or \
        (out / "images" / "val" / "2.JPG").read_bytes() == (second / "JPEGImages" /
                                                          "2.JPG").read_bytes()


def test_files_the_earlier_conversion_did_not_write_are_never_deleted(tmp_path: Path) -> None:
    source = write_coco(tmp_path / "src")
    out = tmp_path / "out"
    convert(source, "yolo", out)
    (out / "images" / "val" / "mine.png").write_bytes(b"mine")  # would join the dataset
    with pytest.raises(DataError, match=r"holds .*mine\.png, which the earlier conversion "):
        convert(source, "yolo", out, overwrite=True)
    assert (out / "images" / "val" / "mine.png").read_bytes() == b"mine"


@pytest.mark.parametrize("inside", ["converted", "sub/deeper"])
def test_an_output_inside_the_source_dataset_is_refused(tmp_path: Path, inside: str) -> None:
    source = write_coco(tmp_path / "src")
    before = snapshot(tmp_path / "src")
    with pytest.raises(DataError, match=r"lies inside .*src, the folder of the dataset"):
        convert(source, "yolo", tmp_path / "src" / inside)
    assert snapshot(tmp_path / "src") == before


def test_a_dataset_yaml_root_is_inside_the_source(tmp_path: Path) -> None:
    write_yolo(tmp_path / "data").unlink()
    (tmp_path / "desc").mkdir()
    (tmp_path / "desc" / "data.yaml").write_text(f"path: {tmp_path / 'data'}\nval: images/val\n"
                                                 "names: [cat, dog, zebra]\n")
    with pytest.raises(DataError, match=r"lies inside .*data, the folder of the dataset"):
        convert(tmp_path / "desc" / "data.yaml", "coco", tmp_path / "data" / "coco")
    convert(tmp_path / "desc" / "data.yaml", "coco", tmp_path / "coco")


def test_a_conversion_that_does_not_read_back_the_same_is_an_error(tmp_path: Path) -> None:
    """A box one pixel wide in an image seven pixels wide: 1/7 with six decimals, times 7, is
    0.999999 pixel, which the YOLO reader drops (under one pixel); the conversion says so."""
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (7, 9)).save(root / "images" / "a.png")
    data = coco_json()
    data["images"] = [{"id": 1, "file_name": "a.png", "width": 7, "height": 9}]
    data["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [3, 2, 1, 4],
                            "area": 4, "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 7, 9],
                            "area": 63, "iscrowd": 0}]
    (root / "instances_val.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"val split reads back as 1 images and 1 boxes "
                       r"\(cat 0, dog 1, zebra 0\) where 1 images and 2 boxes \(cat 1, dog 1, "
                       r"zebra 0\) were written"):
        convert(root / "instances_val.json", "yolo", tmp_path / "out")
    convert(root / "instances_val.json", "voc", tmp_path / "voc")  # exact there
    assert count(tmp_path / "voc") == (1, 2)

