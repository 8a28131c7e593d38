"""Faults an adversarial user found in the dataset tools: a conversion that wrote over its own
source, repeated COCO ids that gave a wrong AP in silence, symlinked folders that were skipped,
and text files with a UTF-8 byte-order mark."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_factory import (
    IMAGES,
    NAMES,
    coco_json,
    snapshot,
    write_coco,
    write_pictures,
    write_voc,
    write_yolo,
)
from yolov3.classes import read_names
from yolov3.cli.main import main
from yolov3.datasets.check import check_dataset
from yolov3.datasets.coco import CocoDataset
from yolov3.datasets.convert import convert
from yolov3.datasets.open import open_dataset
from yolov3.datasets.problems import (
    CLASS,
    DUPLICATE,
    NO_LABEL,
    REPEATED_ID,
    REPEATED_IMAGE,
)
from yolov3.errors import DataError
from yolov3.evaluation.coco_eval import ground_truth
from yolov3.evaluation.metrics import coco_metrics
from yolov3.images import list_images

WRITERS = {"coco": write_coco, "yolo": write_yolo, "voc": write_voc}
BOM = "\ufeff"


def by_name(data: Path | str, split: str) -> dict[str, tuple]:
    """Each image's boxes (to a thousandth of a pixel: YOLO txt's fractions have six decimals)
    and classes."""
    ds = open_dataset(data, split)
    assert not ds.problems, ds.problems.messages
    return {ds.files[i].name: (ds.annotations(i).boxes.round(3).tolist(),
                               ds.annotations(i).labels.tolist())
            for i in range(len(ds))}


# 1. A conversion never deletes, moves or rewrites a file of its source.

@pytest.mark.parametrize("symlink", [False, True])
@pytest.mark.parametrize("dst", ["coco", "yolo", "voc"])
@pytest.mark.parametrize("src", ["coco", "yolo", "voc"])
def test_converting_into_the_sources_own_root_is_refused(tmp_path: Path, src: str, dst: str,
                                                         symlink: bool) -> None:
    data = WRITERS[src](tmp_path / "src")
    root = tmp_path / "src"
    before = snapshot(root)
    with pytest.raises(DataError, match="a file of the dataset being converted") as err:
        convert(data, dst, root, symlink=symlink)
    assert str(root) in str(err.value)
    assert snapshot(root) == before  # nothing deleted, replaced or added
    assert by_name(data, "val")  # and the source still reads


@pytest.mark.parametrize("src", ["coco", "yolo", "voc"])
def test_cli_refuses_an_output_that_holds_or_is_the_source(tmp_path: Path, src: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    data = WRITERS[src](tmp_path / "data" / "src")
    before = snapshot(tmp_path / "data")
    (tmp_path / "link").symlink_to(tmp_path / "data" / "src")
    for out in (tmp_path / "data", tmp_path / "link", tmp_path / "data" / "src" / "."):
        assert main(["data", "convert", str(data), "--to", "yolo", "--out", str(out),
                     "--symlink"]) == 1
        assert "a file of the dataset being converted" in capsys.readouterr().err
        assert snapshot(tmp_path / "data") == before


def test_an_output_folder_linked_into_the_source_is_refused(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    before = snapshot(tmp_path / "src")
    (tmp_path / "out" / "images").mkdir(parents=True)
    (tmp_path / "out" / "images" / "val").symlink_to(tmp_path / "src" / "images" / "val")
    with pytest.raises(DataError, match=r"would replace .*1\.png, a file of the dataset"):
        convert(data, "coco", tmp_path / "out")
    assert snapshot(tmp_path / "src") == before
    assert not (tmp_path / "out" / "annotations").exists()  # refused before writing anything


def test_an_output_inside_a_folder_the_source_lists_is_refused(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    before = snapshot(tmp_path / "src")
    with pytest.raises(DataError, match=r"lies inside .*images/val, a folder the dataset"):
        convert(data, "coco", tmp_path / "src" / "images" / "val" / "coco")
    assert snapshot(tmp_path / "src") == before


@pytest.mark.parametrize("src", ["coco", "yolo", "voc"])
def test_converting_beside_the_source_leaves_it_alone(tmp_path: Path, src: str) -> None:
    data = WRITERS[src](tmp_path / "src")
    before = snapshot(tmp_path / "src")
    want = by_name(data, "val")
    for _ in range(2):  # again over the first output, links replaced rather than followed
        convert(data, "yolo", tmp_path / "converted", symlink=True)
    assert snapshot(tmp_path / "src") == before
    assert by_name(data, "val") == want
    assert by_name(tmp_path / "converted", "val") == want


def test_an_output_link_to_a_source_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    convert(data, "yolo", tmp_path / "out")
    label = tmp_path / "out" / "labels" / "val" / "1.txt"
    label.unlink()
    label.symlink_to(tmp_path / "src" / "labels" / "val" / "4.txt")
    before = snapshot(tmp_path / "src")
    convert(data, "yolo", tmp_path / "out")
    assert snapshot(tmp_path / "src") == before
    assert not label.is_symlink() and by_name(tmp_path / "out", "val") == by_name(data, "val")


# 2. Repeated COCO ids: renumbered for the metric, reported by data check.

def merged_coco(root: Path) -> Path:
    """Two COCO files merged: their images renamed apart, image ids 1..8, annotation ids 1..5
    twice (each file numbered its own from 1)."""
    write_pictures(root / "images")
    for name, _, _ in IMAGES:
        shutil.copy(root / "images" / name, root / "images" / f"b{name}")
    first, second = coco_json(), coco_json([f"b{n}" for n, _, _ in IMAGES])
    for im in second["images"]:
        im["id"] += len(IMAGES)
        im["file_name"] = "b" + im["file_name"]
    for a in second["annotations"]:
        a["image_id"] += len(IMAGES)
    merged = {"images": first["images"] + second["images"],
              "annotations": first["annotations"] + second["annotations"],
              "categories": first["categories"]}
    path = root / "instances_val.json"
    path.write_text(json.dumps(merged))
    return path


def perfect(data: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 0.9} for a in data["annotations"] if not a["iscrowd"]]


def test_repeated_annotation_ids_give_ap_one_with_perfect_predictions(tmp_path: Path) -> None:
    path = merged_coco(tmp_path)
    raw = json.loads(path.read_text())
    assert len({a["id"] for a in raw["annotations"]}) < len(raw["annotations"])
    ds = CocoDataset(path)
    gt = ds.ground_truth()
    assert coco_metrics(gt, perfect(raw)).stats["AP"] == pytest.approx(1.0)  # 0.25 before the fix
    assert coco_metrics(ground_truth(ds, set()), perfect(raw)).stats["AP"] == pytest.approx(1.0)
    ids = [a["id"] for a in gt["annotations"]]
    assert len(gt["annotations"]) == len(raw["annotations"]) and len(set(ids)) == len(ids)
    repeated = [m for kind, m in ds.problems.notes if kind == REPEATED_ID]
    assert len(repeated) == 5 and "annotation id 1 is used by 2 annotations (#0, #5)" in repeated[0]
    assert len(ds) == 2 * len(IMAGES)  # the images are all kept


def test_annotation_id_zero_is_renumbered(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    raw = json.loads(path.read_text())
    for a in raw["annotations"]:
        a["id"] -= 1  # 0, 1, ...: pycocotools takes id 0 for "no match"
    path.write_text(json.dumps(raw))
    ds = CocoDataset(path)
    assert coco_metrics(ds.ground_truth(), perfect(raw)).stats["AP"] == pytest.approx(1.0)
    assert [m for k, m in ds.problems.notes if k == REPEATED_ID] == [
        f"{path}: annotation #0: id 0 is not a positive integer; the metric's ground truth "
        "renumbers the annotations"]


def test_unique_annotation_ids_are_kept(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    raw = json.loads(path.read_text())
    for a in raw["annotations"]:
        a["id"] *= 10
    path.write_text(json.dumps(raw))
    ds = CocoDataset(path)
    assert [a["id"] for a in ds.ground_truth()["annotations"]] == [10, 20, 30, 40, 50]
    assert not ds.problems.notes and not ds.problems


def test_data_check_reports_repeated_annotation_ids(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = merged_coco(tmp_path)
    report = check_dataset(path, workers=1, progress=False)
    found = report.messages(REPEATED_ID)
    assert len(found) == 5 and all("is used by 2 annotations" in m for m in found)
    assert report.problems == 5
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "5  repeated or unusable COCO annotation ids" in out and "no problems" not in out


def test_repeated_image_ids_are_refused_naming_both_images(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    raw = json.loads(path.read_text())
    raw["images"][2]["id"] = 1
    path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"image #0 \(.*1\.png\) and image #2 \(.*3\.bmp\) "
                                        "are both id 1"):
        CocoDataset(path)


@pytest.mark.parametrize("alias", ["1.png", "./1.png", "link.png"])
def test_one_image_file_under_two_image_ids(tmp_path: Path, alias: str) -> None:
    path = write_coco(tmp_path)
    if alias == "link.png":
        (tmp_path / "images" / "link.png").symlink_to(tmp_path / "images" / "1.png")
    raw = json.loads(path.read_text())
    raw["images"].append({"id": 9, "file_name": alias, "width": 64, "height": 48})
    raw["annotations"].append({"id": 99, "image_id": 9, "category_id": 1,
                               "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0})
    path.write_text(json.dumps(raw))
    ds = CocoDataset(path)
    assert ds.image_ids.tolist() == [1, 2, 3, 4]  # the first entry kept
    assert ds.problems.kinds == [REPEATED_IMAGE]
    (message,) = ds.problems.messages
    assert f"image id 9: {tmp_path / 'images' / alias} is the image file of image id 1" in message
    gt = ds.ground_truth()
    assert [im["id"] for im in gt["images"]] == [1, 2, 3, 4]
    assert 99 not in [a["id"] for a in gt["annotations"]]
    report = check_dataset(path, workers=1, progress=False)
    assert report.messages(REPEATED_IMAGE) == [message] and report.problems == 1
    with pytest.raises(DataError, match="is the image file of image id 1"):
        CocoDataset(path, strict=True)


# 3. Symlinked folders are walked, once each, without looping on a cycle.

def test_list_images_follows_linked_folders_without_looping(tmp_path: Path) -> None:
    write_pictures(tmp_path / "elsewhere")
    top = tmp_path / "top"
    write_pictures(top / "real")
    (top / "real" / "loop").symlink_to(top)  # a link to an ancestor
    (top / "self").symlink_to(top / "self")  # a link to itself (not a folder)
    (top / "linked").symlink_to(tmp_path / "elsewhere")
    (top / "again").symlink_to(tmp_path / "elsewhere")  # a second link to one folder
    (top / "dead").symlink_to(tmp_path / "missing")
    (top / "a_link").symlink_to(top / "real")  # walked at its own path, not through the link
    names = sorted(n for n, _, _ in IMAGES)
    got = list_images(top)
    assert got == sorted(got)
    assert got == sorted([top / "again" / n for n in names] + [top / "real" / n for n in names])
    assert list_images(top) == got  # deterministic


def test_a_yolo_image_folder_with_a_linked_subfolder(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    root = data.parent
    write_pictures(tmp_path / "more")
    (root / "images" / "val" / "more").symlink_to(tmp_path / "more")
    (root / "images" / "val" / "up").symlink_to(root / "images")  # a cycle
    (root / "labels" / "val" / "more").mkdir()
    (root / "labels" / "val" / "more" / "1.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    ds = open_dataset(data, "val")
    assert sorted(str(f.relative_to(root / "images" / "val")) for f in ds.files) == sorted(
        [n for n, _, _ in IMAGES] + [f"more/{n}" for n, _, _ in IMAGES])
    report = check_dataset(data, "val", workers=1, progress=False)
    missing = report.messages(NO_LABEL)
    assert any("more/2.txt" in m for m in missing) and report.problems == 4  # 3.bmp twice, 2, 4


def test_voc_and_coco_images_in_linked_folders(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "voc")
    (root / "JPEGImages" / "4.jpeg").rename(tmp_path / "4.jpeg")
    (tmp_path / "kept").mkdir()
    (tmp_path / "4.jpeg").rename(tmp_path / "kept" / "4.jpeg")
    (root / "JPEGImages" / "sub").symlink_to(tmp_path / "kept")
    ds = open_dataset(root, "all")
    assert not ds.problems and root / "JPEGImages" / "sub" / "4.jpeg" in ds.files

    path = write_coco(tmp_path / "coco")
    write_pictures(tmp_path / "extra")
    (tmp_path / "coco" / "images" / "extra").symlink_to(tmp_path / "extra")
    report = check_dataset(path, workers=1, progress=False)
    assert len(report.messages(NO_LABEL)) == len(IMAGES)  # not "no problems found"


# 4. Text files with a UTF-8 byte-order mark read as meant.

def with_bom(path: Path) -> None:
    path.write_bytes(BOM.encode() + path.read_bytes())


def test_names_file_and_voc_classes_with_a_bom(tmp_path: Path) -> None:
    names = tmp_path / "x.names"
    names.write_text("cat\ndog\n", encoding="utf-8-sig")
    assert read_names(names) == ["cat", "dog"]
    root = write_voc(tmp_path / "voc")
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8-sig")
    ds = open_dataset(root, "all")
    assert ds.names == NAMES and not ds.problems


def test_yolo_labels_yaml_and_list_file_with_a_bom(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    root = data.parent
    want = by_name(data, "val")
    for label in (root / "labels" / "val").iterdir():
        with_bom(label)
    with_bom(data)
    assert by_name(data, "val") == want
    listing = root / "val.txt"
    listing.write_text("".join(f"images/val/{n}\n" for n, _, _ in IMAGES), encoding="utf-8-sig")
    data.write_text(f"val: val.txt\nnames: {NAMES}\n", encoding="utf-8-sig")
    assert by_name(data, "val") == want
    assert check_dataset(data, "val", workers=1, progress=False).problems == 1  # 3.bmp: no label


def test_darknet_data_and_names_with_a_bom(tmp_path: Path) -> None:
    data = write_yolo(tmp_path / "src")
    root = data.parent
    want = by_name(data, "val")
    (root / "val.txt").write_text("".join(str(root / "images" / "val" / n) + "\n"
                                          for n, _, _ in IMAGES), encoding="utf-8-sig")
    (root / "x.names").write_text("\n".join(NAMES) + "\n", encoding="utf-8-sig")
    darknet = root / "x.data"
    darknet.write_text("classes = 2\nvalid = val.txt\nnames = x.names\n", encoding="utf-8-sig")
    with pytest.raises(DataError, match=r"classes = 2 but x\.names has 3 names"):
        open_dataset(darknet, "val")  # the classes line is read despite the mark before it
    darknet.write_text("valid = val.txt\nnames = x.names\n", encoding="utf-8-sig")
    assert by_name(darknet, "val") == want


def test_voc_xml_image_sets_and_coco_json_with_a_bom(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "voc")
    for xml in (root / "Annotations").iterdir():
        with_bom(xml)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("1\n2\n3\n4\n", encoding="utf-8-sig")
    assert len(by_name(root, "val")) == len(IMAGES)
    report = check_dataset(root, workers=1, progress=False)
    assert report.problems == 0, report.text()

    path = write_coco(tmp_path / "coco")
    with_bom(path)
    assert len(by_name(path, "val")) == len(IMAGES)


def test_check_finds_no_class_problem_for_a_bom_classes_file(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    (root / "classes.txt").write_text("".join(n + "\n" for n in NAMES), encoding="utf-8-sig")
    report = check_dataset(root, workers=1, progress=False)
    assert report.messages(CLASS) == [] and report.problems == 0


def test_a_cfg_and_a_training_config_with_a_byte_order_mark_read_as_meant(tmp_path) -> None:
    from conftest import MICRO_CFG
    from yolov3.model.cfg import load_cfg
    from yolov3.train.config import load_config

    cfg = tmp_path / "micro.cfg"
    cfg.write_text(MICRO_CFG, encoding="utf-8-sig")
    assert load_cfg(cfg)[0].type == "net"
    config = tmp_path / "run.yaml"
    config.write_text("optimizer:\n  lr: 0.002\n", encoding="utf-8-sig")
    assert load_config(config).optimizer.lr == 0.002


# 5. VOC annotations in sub-folders are read, paired with their images by file name.

def nest_voc(root: Path) -> Path:
    """write_voc's set with its annotations in sub-folders (none left at the top) and one image
    in a sub-folder too."""
    ann = root / "Annotations"
    for name, folder in (("1.xml", "a"), ("2.xml", "a"), ("3.xml", "b/c"), ("4.xml", "b")):
        (ann / folder).mkdir(parents=True, exist_ok=True)
        (ann / name).rename(ann / folder / name)
    (root / "JPEGImages" / "a").mkdir()
    (root / "JPEGImages" / "2.JPG").rename(root / "JPEGImages" / "a" / "2.JPG")
    return ann


def test_voc_annotations_in_sub_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    want = by_name(write_voc(tmp_path / "flat"), "all")
    root = write_voc(tmp_path / "voc")
    nest_voc(root)
    assert by_name(root, "all") == want  # every image, none dropped
    assert len(by_name(root, "train")) + len(by_name(root, "val")) == len(IMAGES)
    assert main(["data", "check", str(root)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_voc_annotations_of_one_name_in_two_sub_folders(tmp_path: Path) -> None:
    root = write_voc(tmp_path / "voc")
    ann = nest_voc(root)
    xml = (ann / "a" / "1.xml").read_text()
    first = xml[xml.index("<object>"):xml.index("</object>") + 9]
    (ann / "a" / "1.xml").write_text(xml.replace("</annotation>", first + "</annotation>"))
    shutil.copy(ann / "a" / "1.xml", ann / "b" / "1.xml")
    ds = open_dataset(root, "all")
    assert ds.problems.messages == [f"{ann / 'b' / '1.xml'}: has the file name of "
                                    f"{ann / 'a' / '1.xml'}, and VOC pairs annotations with "
                                    "images by file name: rename one; this one is left out"]
    assert len(ds) == len(IMAGES)
    report = check_dataset(root, workers=1, progress=False)
    assert report.problems == 2
    assert report.messages(DUPLICATE)[0].startswith(f"{ann / 'a' / '1.xml'}: boxes 1 and 3")
