"""The three dataset formats: same boxes for the same data, format detection, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_factory import (
    CATEGORY_IDS,
    IMAGES,
    NAMES,
    coco_json,
    expected,
    write_coco,
    write_pictures,
    write_voc,
    write_yolo,
)
from yolov3.cli.main import main
from yolov3.datasets.base import evenly_spaced
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.open import dataset_splits, detect_format, open_dataset
from yolov3.datasets.voc import VocDataset
from yolov3.datasets.yolo_txt import YoloDataset, label_path
from yolov3.errors import DataError


def by_name(dataset) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = {}
    for i in range(len(dataset)):
        ann = dataset.annotations(i)
        out[ann.file.name] = (ann.boxes, ann.labels, ann.ignore)
    return out


@pytest.fixture
def three(tmp_path: Path) -> dict[str, Path]:
    return {"coco": write_coco(tmp_path / "coco"), "yolo": write_yolo(tmp_path / "yolo"),
            "voc": write_voc(tmp_path / "voc")}


def test_formats_are_detected(three: dict[str, Path]) -> None:
    assert detect_format(three["coco"])[0] == "coco"
    assert detect_format(three["yolo"])[0] == "yaml"
    assert detect_format(three["yolo"].parent) == ("yaml", three["yolo"])  # folder with data.yaml
    assert detect_format(three["voc"])[0] == "voc"
    assert isinstance(open_dataset(three["coco"]), CocoDataset)
    assert isinstance(open_dataset(three["yolo"]), YoloDataset)
    assert isinstance(open_dataset(three["voc"], split="all"), VocDataset)


def test_the_three_formats_give_identical_boxes(three: dict[str, Path]) -> None:
    want = expected()
    datasets = {"coco": open_dataset(three["coco"]), "yolo": open_dataset(three["yolo"]),
                "voc": open_dataset(three["voc"], split="all")}
    for fmt, ds in datasets.items():
        assert ds.names == NAMES, fmt
        assert len(ds) == len(IMAGES) and not ds.problems, fmt
        got = by_name(ds)
        assert got.keys() == want.keys(), fmt
        for name, (boxes, labels, ignore) in want.items():
            np.testing.assert_array_equal(got[name][0], boxes, err_msg=f"{fmt} {name}")
            np.testing.assert_array_equal(got[name][1], labels, err_msg=f"{fmt} {name}")
            if fmt != "yolo":  # YOLO txt has no crowd / difficult flag
                np.testing.assert_array_equal(got[name][2], ignore, err_msg=f"{fmt} {name}")
    # numeric file names are the image ids in every format
    for ds in datasets.values():
        assert sorted(ds.image_ids.tolist()) == [1, 2, 3, 4]


def test_samples_hold_the_decoded_image_and_its_boxes(three: dict[str, Path]) -> None:
    ds = open_dataset(three["yolo"])
    for i in range(len(ds)):
        sample = ds[i]
        ann = ds.annotations(i)
        assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
        assert sample.size == ann.size
        np.testing.assert_array_equal(sample.boxes, ann.boxes)
        assert sample.image_id == ann.image_id and sample.boxes.dtype == np.float32


def test_coco_category_ids_map_to_contiguous_classes_and_back(three: dict[str, Path]) -> None:
    ds = open_dataset(three["coco"])
    assert ds.category_ids == CATEGORY_IDS
    assert ds.category_to_label() == {1: 0, 3: 1, 90: 2}
    zebra = by_name(ds)["4.jpeg"][1]
    assert zebra.tolist() == [2] and ds.category_ids[zebra[0]] == 90


def test_coco_tiny_boxes_are_dropped_and_crowd_kept(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    data = coco_json()
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 1,
                                "bbox": [5, 5, 0.5, 10], "area": 5, "iscrowd": 0})
    path.write_text(json.dumps(data))
    ds = open_dataset(path)
    assert not ds.problems
    assert len(by_name(ds)["1.png"][0]) == 2  # the 0.5-pixel-wide box is gone
    assert by_name(ds)["2.JPG"][2].tolist() == [False, True]


def test_coco_images_resolve_against_images_option(tmp_path: Path) -> None:
    (tmp_path / "ann").mkdir()
    write_pictures(tmp_path / "pictures")
    path = tmp_path / "ann" / "instances_val.json"
    path.write_text(json.dumps(coco_json()))
    assert len(open_dataset(path).problems) == len(IMAGES)  # not found beside the JSON
    ds = open_dataset(path, images=tmp_path / "pictures")
    assert len(ds) == len(IMAGES) and not ds.problems


def test_darknet_data_file(tmp_path: Path) -> None:
    write_yolo(tmp_path)
    files = sorted((tmp_path / "images" / "val").iterdir())
    (tmp_path / "valid.txt").write_text("".join(f"images/val/{f.name}\n" for f in files))
    (tmp_path / "obj.names").write_text("\n".join(NAMES) + "\n")
    (tmp_path / "obj.data").write_text(
        "classes = 3\ntrain = valid.txt\nvalid = valid.txt\nnames = obj.names\nbackup = b/\n")
    ds = open_dataset(tmp_path / "obj.data", split="val")
    assert isinstance(ds, YoloDataset) and ds.names == NAMES
    got, want = by_name(ds), expected()
    for name in want:
        np.testing.assert_array_equal(got[name][0], want[name][0])
    assert dataset_splits(tmp_path / "obj.data") == ["train", "val"]


def test_yolo_yaml_with_names_mapping_and_list_of_folders(tmp_path: Path) -> None:
    write_yolo(tmp_path)
    (tmp_path / "d.yaml").write_text(
        "path: .\nval: [images/val]\nnames: {0: cat, 1: dog, 2: zebra}\n")
    assert len(open_dataset(tmp_path / "d.yaml")) == len(IMAGES)
    with pytest.raises(DataError, match="no 'train' split"):
        open_dataset(tmp_path / "d.yaml", split="train")


def test_label_path_follows_darknet() -> None:
    assert label_path(Path("/d/images/train/a.JPG")) == Path("/d/labels/train/a.txt")
    assert label_path(Path("/VOC/JPEGImages/x.jpg")) == Path("/VOC/labels/x.txt")
    assert label_path(Path("/flat/x.png")) == Path("/flat/x.txt")


def test_voc_splits_from_image_sets_and_by_name(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    train, val = open_dataset(root, "train"), open_dataset(root, "val")
    assert len(train) + len(val) == len(IMAGES)
    assert not set(train.image_ids.tolist()) & set(val.image_ids.tolist())
    assert open_dataset(root, "val").image_ids.tolist() == val.image_ids.tolist()  # stable
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("1\n2\n")
    (sets / "val.txt").write_text("4\n")
    assert sorted(open_dataset(root, "train").image_ids.tolist()) == [1, 2]
    assert open_dataset(root, "val").image_ids.tolist() == [4]
    with pytest.raises(DataError, match="no such split file"):
        open_dataset(root, "test")


def test_kangaroo_loads_as_voc(kangaroo_dir: Path) -> None:
    ds = open_dataset(kangaroo_dir, split="all")
    assert isinstance(ds, VocDataset)
    assert len(ds) == 164 and ds.names == ["kangaroo"] and not ds.problems
    assert ds.num_boxes > 164
    ann = ds.annotations(0)  # 00001.xml: two kangaroos in a 450x319 photo
    assert ann.image_id == 1 and ann.size == (319, 450)
    np.testing.assert_array_equal(ann.boxes[0], [232, 88, 386, 262])
    train, val = open_dataset(kangaroo_dir, "train"), open_dataset(kangaroo_dir, "val")
    assert len(train) + len(val) == 164 and 0 < len(val) < len(train)


# ---- bad input: each problem names the file and the line or id -------------------------------


def _append_label(root: Path, line: str) -> Path:
    path = root / "labels" / "val" / "1.txt"
    path.write_text(path.read_text() + line + "\n")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [("0 0.5 0.5 0.2", r"1\.txt:3: expected 5 fields .* found 4"),
     ("7 0.5 0.5 0.1 0.1", r"1\.txt:3: class 7 is out of range"),
     ("1 0.9 0.5 0.5 0.1", r"1\.txt:3: box .* lies outside the image")],
)
def test_bad_yolo_label_is_skipped_or_strict_error(tmp_path: Path, line: str,
                                                   message: str) -> None:
    root = tmp_path / "yolo"
    write_yolo(root)
    _append_label(root, line)
    ds = open_dataset(root / "data.yaml")
    assert len(ds) == len(IMAGES) - 1  # that image is skipped, the others load
    assert len(ds.problems) == 1
    assert "1.png" not in by_name(ds)
    with pytest.raises(DataError, match=message):
        open_dataset(root / "data.yaml", strict=True)


def test_coco_box_outside_the_image(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    data = coco_json()
    data["annotations"][0]["bbox"] = [50, 10, 40, 10]  # x2 = 90 in a 64-wide image
    path.write_text(json.dumps(data))
    ds = open_dataset(path)
    assert len(ds) == len(IMAGES) - 1 and len(ds.problems) == 1
    with pytest.raises(DataError, match=r"instances_val\.json: annotation id 1: box .* outside"):
        open_dataset(path, strict=True)


def test_coco_unknown_category_and_missing_image(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    data = coco_json()
    data["annotations"][0]["category_id"] = 2
    path.write_text(json.dumps(data))
    (tmp_path / "images" / "2.JPG").unlink()
    ds = open_dataset(path)
    assert sorted(ds.image_ids.tolist()) == [3, 4]
    messages = "\n".join(ds.problems)
    assert "annotation id 1: category_id 2 is not in 'categories'" in messages
    assert "image id 2:" in messages and "2.JPG not found" in messages
    with pytest.raises(DataError, match=r"image id 2: .*2\.JPG not found"):
        open_dataset(path, strict=True)


def test_json_that_is_not_coco(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"images": [], "shapes": []}))
    with pytest.raises(DataError, match=r"labels\.json: not a COCO annotation file.*'annotations'"):
        open_dataset(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=r"labels\.json: not valid JSON"):
        open_dataset(path)


def test_voc_xml_without_size(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    xml = root / "Annotations" / "2.xml"
    text = xml.read_text()
    xml.write_text(text[:text.index("<size>")] + text[text.index("</size>") + 7:])
    ds = open_dataset(root, "all")
    assert len(ds) == len(IMAGES) - 1
    assert list(ds.problems) == [f"{xml}: has no <size> (the image width and height)"]
    with pytest.raises(DataError, match=r"2\.xml: has no <size>"):
        open_dataset(root, "all", strict=True)


def test_voc_missing_image(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    (root / "JPEGImages" / "4.jpeg").unlink()
    with pytest.raises(DataError, match=r"4\.xml: its image .* is not in"):
        open_dataset(root, "all", strict=True)


def test_missing_image_in_a_list_file(tmp_path: Path) -> None:
    write_yolo(tmp_path)
    (tmp_path / "val.txt").write_text("images/val/1.png\nimages/val/nope.jpg\n")
    (tmp_path / "d.yaml").write_text("path: .\nval: val.txt\nnames: [cat, dog, zebra]\n")
    assert len(open_dataset(tmp_path / "d.yaml")) == 1
    with pytest.raises(DataError, match=r"val\.txt:2: image images/val/nope\.jpg not found"):
        open_dataset(tmp_path / "d.yaml", strict=True)


def test_unknown_and_ambiguous_paths_list_the_forms(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no such file.*dataset YAML.*COCO.*VOC.*darknet"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match=r"unknown dataset description.*--data takes one of"):
        open_dataset(tmp_path / "x.txt")
    root = write_voc(tmp_path / "both")
    (root / "data.yaml").write_text("names: [a]\nval: JPEGImages\n")
    with pytest.raises(DataError, match="ambiguous"):
        open_dataset(root)
    with pytest.raises(DataError, match="not a dataset folder"):
        open_dataset(tmp_path)


def test_image_whose_size_disagrees_with_its_annotation(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    data = coco_json()
    data["images"][0]["width"] = 65
    path.write_text(json.dumps(data))
    ds = open_dataset(path)
    with pytest.raises(DataError, match=r"1\.png: the image is 64x48 but its annotation"):
        ds[0]


def test_evenly_spaced_picks_include_both_ends_and_never_repeat() -> None:
    assert evenly_spaced(12, 5).tolist() == [0, 3, 6, 8, 11]
    assert evenly_spaced(3, 10).tolist() == [0, 1, 2]  # all of a smaller set
    assert evenly_spaced(1000, 999).tolist() == sorted(set(evenly_spaced(1000, 999).tolist()))
    assert evenly_spaced(0, 4).tolist() == []


@pytest.mark.parametrize("fmt", ["yolo", "voc", "darknet"])
def test_images_folder_is_refused_for_a_dataset_that_lists_its_own(tmp_path: Path, fmt: str,
                                                                   capsys) -> None:
    """``--images DIR`` is the image folder of a COCO JSON; a YOLO, VOC or darknet dataset
    names its own images, so the option was ignored in silence (``val --images 5``)."""
    data = {"yolo": write_yolo, "voc": write_voc}.get(fmt, write_yolo)(tmp_path / "set")
    if fmt == "darknet":
        (tmp_path / "set" / "obj.names").write_text("\n".join(NAMES) + "\n")
        (tmp_path / "set" / "val.txt").write_text("images/val/1.png\n")
        data = tmp_path / "set" / "obj.data"
        data.write_text("classes = 3\nvalid = val.txt\nnames = obj.names\n")
    with pytest.raises(DataError, match=f"--images {tmp_path}: is the image folder of a COCO "
                       f"annotation JSON; {data} is a {fmt} dataset"):
        open_dataset(data, "val", images=tmp_path)
    for command in (["val", "--data", str(data)], ["anchors", "--data", str(data)],
                    ["data", "check", str(data)],
                    ["data", "convert", str(data), "--to", "coco", "--out", str(tmp_path / "o")]):
        assert main([*command, "--images", "5"]) == 1, command
        assert "--images 5: is the image folder of a COCO annotation JSON" in \
            capsys.readouterr().err
