"""Conversion between the formats: exact for boxes, class names and splits."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from data_factory import CATEGORY_IDS, IMAGES, NAMES, write_coco, write_voc, write_yolo
from yolov3.cli.main import main
from yolov3.datasets.convert import convert, number
from yolov3.datasets.open import dataset_splits, open_dataset
from yolov3.inference.detector import Detections
from yolov3.inference.labels import LabelFolder

WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}


def by_name(data: Path, split: str) -> tuple[dict[str, tuple], object]:
    ds = open_dataset(data, split)
    assert not ds.problems
    out = {}
    for i in range(len(ds)):
        ann = ds.annotations(i)
        out[ann.file.name] = (ann.boxes, ann.labels, ann.ignore, ann.size)
    return out, ds


def assert_same(got: dict, want: dict, ignore_flags: bool, decimals: bool = False) -> None:
    """The same boxes, classes, sizes (and ignore flags); with ``decimals`` (YOLO txt on the
    way, whose fractions have six decimals) the boxes within a millionth of the image side."""
    assert got.keys() == want.keys()
    for name in want:
        for k in (0, 1, 2) if ignore_flags else (0, 1):
            if k == 0 and decimals:
                np.testing.assert_allclose(got[name][k], want[name][k], rtol=0,
                                           atol=2e-6 * max(want[name][3]), err_msg=name)
            else:
                np.testing.assert_array_equal(got[name][k], want[name][k], err_msg=name)
        assert got[name][3] == want[name][3]


@pytest.mark.parametrize("src", ["coco", "yolo", "voc"])
@pytest.mark.parametrize("dst", ["coco", "yolo", "voc"])
def test_round_trip_is_exact(tmp_path: Path, src: str, dst: str) -> None:
    """Exact, but for YOLO txt's six decimals."""
    source = WRITERS[src](tmp_path / "src")
    splits = dataset_splits(source)
    assert splits == {"coco": ["val"], "yolo": ["train", "val"], "voc": ["train", "val"]}[src]
    convert(source, dst, tmp_path / "there")
    convert(tmp_path / "there", src, tmp_path / "back")
    flags = "yolo" not in (src, dst)  # YOLO txt cannot mark crowd / difficult boxes
    for split in splits:
        want, _ = by_name(source, split)
        for folder in ("there", "back"):
            got, ds = by_name(tmp_path / folder, split)
            assert_same(got, want, flags, decimals="yolo" in (src, dst))
            assert ds.names == NAMES


def test_coco_ids_and_sizes_survive_yolo_and_voc(tmp_path: Path) -> None:
    source = write_coco(tmp_path / "src")
    for fmt in ("yolo", "voc"):
        convert(source, fmt, tmp_path / fmt)
        got, ds = by_name(tmp_path / fmt, "val")
        assert sorted(ds.image_ids.tolist()) == [1, 2, 3, 4]  # numeric file names
        assert {k: v[3] for k, v in got.items()} == {n: s for n, s, _ in IMAGES}
    convert(source, "coco", tmp_path / "coco")
    data = json.loads((tmp_path / "coco" / "annotations" / "instances_val.json").read_text())
    assert [c["id"] for c in data["categories"]] == CATEGORY_IDS
    assert [c["name"] for c in data["categories"]] == NAMES
    assert sorted(im["id"] for im in data["images"]) == [1, 2, 3, 4]


def test_voc_output_keeps_the_class_order(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "src").parent
    (root / "data.yaml").write_text("path: .\nval: images/val\nnames: [zebra, cat, dog]\n")
    convert(root, "voc", tmp_path / "voc")
    assert (tmp_path / "voc" / "classes.txt").read_text().split() == ["zebra", "cat", "dog"]
    assert open_dataset(tmp_path / "voc", "val").names == ["zebra", "cat", "dog"]


def test_same_stem_different_files_get_distinct_names(tmp_path: Path) -> None:
    root = write_yolo(tmp_path / "src").parent
    (root / "images" / "other").mkdir()
    (root / "images" / "val" / "1.png").rename(root / "images" / "other" / "1.png")
    (root / "labels" / "other").mkdir()
    (root / "labels" / "val" / "1.txt").rename(root / "labels" / "other" / "1.txt")
    write_yolo(tmp_path / "again")
    (root / "data.yaml").write_text(
        f"path: .\nval: [images/val, images/other, {tmp_path / 'again' / 'images' / 'val'}]\n"
        "names: [cat, dog, zebra]\n")
    convert(root, "voc", tmp_path / "voc")
    names = sorted(p.name for p in (tmp_path / "voc" / "JPEGImages").iterdir())
    assert len(names) == 2 * len(IMAGES)
    assert len({Path(n).stem for n in names}) == len(names)  # one XML per image


def test_numbers_read_back_exactly() -> None:
    for v in (233.0, 0.1 + 0.2, 1 / 3, 10.5, 1e-7):
        assert float(number(v)) == v
    assert number(233.0) == "233"


def test_convert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_voc(tmp_path / "voc")
    rc = main(["data", "convert", str(source), "--to", "yolo", "--out", str(tmp_path / "y"),
               "--symlink"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "train:" in out and "val:" in out
    images = [p for p in (tmp_path / "y" / "images").rglob("*") if p.suffix]
    assert len(images) == len(IMAGES) and all(p.is_symlink() for p in images)
    with pytest.raises(SystemExit):
        main(["data", "convert", str(source), "--to", "nope", "--out", str(tmp_path / "z")])
    assert main(["data", "convert", str(tmp_path / "missing.json"), "--to", "voc", "--out",
                 str(tmp_path / "z")]) == 1
    assert "missing.json: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("dst", ["coco", "yolo", "voc"])
def test_an_unreadable_yolo_image_is_left_out_and_counted(tmp_path: Path, dst: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    source = write_yolo(tmp_path / "src")
    broken = next((source.parent / "images" / "val").iterdir())
    broken.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")  # YOLO needs its size: it cannot be read
    out = tmp_path / dst
    assert main(["data", "convert", str(source), "--to", dst, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(IMAGES) - 1} images (1 unreadable left out)" in printed
    assert f"{broken.name}: not a readable image" in printed
    for split in dataset_splits(out):
        got, _ = by_name(out, split)
        assert len(got) == len(IMAGES) - 1 and broken.name not in got
    code = main(["data", "convert", str(source), "--to", dst, "--out", str(tmp_path / "s"),
                 "--strict"])
    assert code == 1 and f"{broken.name}: not a readable image" in capsys.readouterr().err


def test_one_yolo_label_writer_for_convert_and_detect(tmp_path: Path) -> None:
    """``data convert --to yolo`` and ``detect --save-txt`` write the same line for the same
    box: the class an integer, each fraction with six decimals; data.yaml alike."""
    convert(write_coco(tmp_path / "src"), "yolo", tmp_path / "y")
    converted = (tmp_path / "y" / "labels" / "val" / "1.txt").read_text()
    assert converted.splitlines()[0] == "0 0.265625 0.479167 0.406250 0.708333"
    assert all(re.fullmatch(r"\d+( \d\.\d{6}){4}", line)
               for p in (tmp_path / "y" / "labels" / "val").iterdir()
               for line in p.read_text().splitlines())
    _, (h, w), objects = IMAGES[0]
    dets = Detections(torch.tensor([o[1:5] for o in objects], dtype=torch.float32),
                      torch.tensor([0.9, 0.8]), torch.tensor([o[0] for o in objects]))
    (tmp_path / "detect").mkdir()
    folder = LabelFolder(tmp_path / "detect", NAMES)
    assert folder.add_frame("1", 0, dets, (h, w)).read_text() == converted
    for out in (tmp_path / "y", tmp_path / "detect"):
        text = (out / "data.yaml").read_text()
        assert "names:\n- cat\n- dog\n- zebra\n" in text, text
