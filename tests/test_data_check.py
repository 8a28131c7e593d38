"""``yolov3 data check`` on datasets with one planted problem of each kind finds every one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_factory import NAMES, write_coco, write_voc, write_yolo
from yolov3.cli.main import main
from yolov3.datasets.check import check_dataset, duplicate_pairs, orientation_problem
from yolov3.datasets.problems import (
    BOX,
    CLASS,
    CUT_SHORT,
    DUPLICATE,
    EXIF,
    MALFORMED,
    NO_IMAGE,
    NO_LABEL,
    SIZE,
    UNREADABLE,
    ZERO_AREA,
)
from yolov3.errors import DataError


def picture(path: Path, hw: tuple[int, int], orientation: int | None = None) -> None:
    """A random picture of (height, width) as stored, with an EXIF orientation if given."""
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (*hw, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def assert_found(report, expected: dict[str, list[str]]) -> None:
    """Exactly the planted problems: per kind, one message naming each fragment."""
    for kind in (UNREADABLE, CUT_SHORT, NO_LABEL, NO_IMAGE, MALFORMED, CLASS, BOX, ZERO_AREA,
                 DUPLICATE, EXIF, SIZE):
        messages = report.messages(kind)
        fragments = expected.get(kind, [])
        assert len(messages) == len(fragments), (kind, messages)
        for fragment in fragments:
            assert any(fragment in m for m in messages), (kind, fragment, messages)


def test_yolo_dataset_with_every_kind_of_problem(tmp_path: Path) -> None:
    data = write_yolo(tmp_path)  # 3.bmp has no label file: an image without labels
    images, labels = tmp_path / "images" / "val", tmp_path / "labels" / "val"
    truncate(images / "2.JPG")  # a JPEG cut short: read, its last third grey
    picture(images / "11.png", (20, 30))
    (labels / "11.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    truncate(images / "11.png")  # a PNG cut short does not decode
    (labels / "9.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for name, line in [("5", "0 0.5 0.5 0.2"), ("6", "7 0.5 0.5 0.2 0.2"),
                       ("7", "1 1.5 0.5 0.2 0.2"), ("8", "2 0.5 0.5 0 0.3\n1 0.5 0.5 0.2 0.2"),
                       ("10", "0 0.5 0.5 0.002 0.2\n2 0.5 0.5 0.2 0.2")]:
        picture(images / f"{name}.png", (20, 30))
        (labels / f"{name}.txt").write_text(line + "\n")
    label = labels / "1.txt"
    label.write_text(label.read_text() + label.read_text().splitlines()[0] + "\n")

    report = check_dataset(data, "val", workers=2, progress=False)
    assert_found(report, {
        UNREADABLE: ["11.png: not a readable image"],
        CUT_SHORT: ["2.JPG: the file ends before its picture does"],
        NO_LABEL: ["3.bmp: no label file"],
        NO_IMAGE: ["9.txt: no image of this name"],
        MALFORMED: ["5.txt:1: expected 5 fields"],
        CLASS: ["6.txt:1: class 7 is out of range"],
        BOX: ["7.txt:1: box xc=1.5"],
        ZERO_AREA: ["8.txt:1: box has zero width or height",
                    "10.png (30x20): box x1=14.97 y1=8 x2=15.03 y2=12 is 0.06x4 pixels"],
        DUPLICATE: ["1.txt: boxes 1 and 3 (class cat"],
    })
    (split,) = report.splits
    # 1 (3 boxes), 2 (a dog and a cat), 3 (none), 4 (zebra), 8 (one dog left) and 10 (one
    # zebra left) are read; 11 does not decode, and its cat counts as its label file has it.
    assert split.images == 7 and split.histogram == {"cat": 4, "dog": 2, "zebra": 3}
    # the file lost its last third: about that share of the picture is grey
    (cut,) = report.messages(CUT_SHORT)
    assert 25 < float(cut.split("; ")[1].split("%")[0]) < 45, cut
    with pytest.raises(DataError, match="has no 'tain' split"):
        check_dataset(data, "tain", workers=1, progress=False)


def test_coco_dataset_with_every_kind_of_problem(tmp_path: Path) -> None:
    path = write_coco(tmp_path)
    images = tmp_path / "images"
    data = json.loads(path.read_text())
    anns = data["annotations"]
    truncate(images / "4.jpeg")  # a JPEG cut short: read, its last third grey
    picture(images / "5.png", (10, 10))  # not in the JSON
    extra = [("6.png", None, 20, 30), ("7.jpg", (30, 40), 40, 30), ("8.jpg", (30, 40), 30, 40),
             ("9.png", (20, 20), 20, 25), ("10.png", (30, 30), 30, 30),
             ("11.png", (20, 30), 20, 30)]
    for k, (name, stored, h, w) in enumerate(extra, 6):
        if stored is not None:  # 6.png is missing: a label without its image
            picture(images / name, stored, 6 if name.endswith(".jpg") else None)
        data["images"].append({"id": k, "file_name": name, "height": h, "width": w})
    truncate(images / "11.png")  # a PNG cut short does not decode
    anns[0]["bbox"] = [1, 2]  # image 1: malformed
    anns[2]["category_id"] = 7  # image 2: no such category
    anns.append({"id": 50, "image_id": 3, "category_id": 1, "bbox": [30, 40, 20, 20]})
    anns.append({"id": 51, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0, 9]})
    anns += [{"id": i, "image_id": 10, "category_id": 90, "bbox": [4, 4, 20, 20.2]}
             for i in (52, 53)]
    path.write_text(json.dumps(data))

    report = check_dataset(path, workers=2, progress=False)
    assert_found(report, {
        UNREADABLE: ["11.png: not a readable image"],
        CUT_SHORT: ["4.jpeg: the file ends before its picture does"],
        NO_LABEL: ["5.png: not in"],
        NO_IMAGE: ["image id 6: " + str(images / "6.png") + " not found"],
        MALFORMED: ["annotation #0 (id 1): malformed"],
        CLASS: ["annotation id 3: category_id 7 is not in 'categories'"],
        BOX: ["annotation id 50: box x1=30 y1=40 x2=50 y2=60 lies outside the 40x50 image"],
        ZERO_AREA: ["annotation id 51: box x1=5 y1=5 x2=5 y2=14 is 0x9 pixels"],
        DUPLICATE: ["image id 10 (" + str(images / "10.png") + "): boxes 1 and 2 (class zebra"],
        EXIF: ["image id 7", "image id 8"],
        SIZE: ["image id 9 (" + str(images / "9.png") + "): the annotation says 25x20 but the "
               "image is 20x20"],
    })
    turned, stored = report.messages(EXIF)
    assert "puts the boxes on that turned view" in turned and "7.jpg" in turned
    assert "puts the boxes on the stored pixels" in stored and "8.jpg" in stored


def test_voc_dataset_problems(tmp_path: Path) -> None:
    root = write_voc(tmp_path)
    (root / "classes.txt").write_text("".join(n + "\n" for n in NAMES))
    ann, images = root / "Annotations", root / "JPEGImages"
    (ann / "3.xml").unlink()  # 3.bmp has no annotation now
    picture(images / "5.png", (20, 20))
    (ann / "5.xml").write_text((ann / "4.xml").read_text().replace("4.jpeg", "5.png")
                               .replace("zebra", "unicorn"))
    (ann / "6.xml").write_text((ann / "4.xml").read_text().replace("4.jpeg", "6.png"))
    (ann / "7.xml").write_text("<annotation><size><width>5</width>")
    picture(images / "8.jpg", (30, 40), orientation=8)
    xml = (ann / "1.xml").read_text()
    (ann / "8.xml").write_text(xml.replace("1.png", "8.jpg").replace("<width>64</width>", "<width>"
                               "30</width>").replace("<height>48</height>", "<height>40</height>")
                               .replace("<xmax>60</xmax>", "<xmax>30</xmax>")
                               .replace("<ymax>20.25</ymax>", "<ymax>20</ymax>"))
    first_object = xml[xml.index("<object>"):xml.index("</object>") + 9]
    (ann / "1.xml").write_text(xml.replace("</annotation>", first_object + "</annotation>"))

    report = check_dataset(root, workers=1, progress=False)
    assert_found(report, {
        NO_LABEL: ["3.bmp: no " + str(ann / "3") + ".xml"],
        NO_IMAGE: ["6.xml: its image"],
        MALFORMED: ["7.xml: not a readable XML file"],
        CLASS: ["5.xml: object 1: class 'unicorn' is not one of the names"],
        DUPLICATE: ["1.xml: boxes 1 and 3 (class cat"],
        EXIF: ["8.xml: its EXIF orientation turns the stored 40x30 pixels into the 30x40"],
    })


def test_clean_dataset_passes_and_command_line_exit_status(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    clean = write_coco(tmp_path / "clean")
    assert main(["data", "check", str(clean)]) == 0
    out = capsys.readouterr().out
    assert "val (coco): 4 images, 5 boxes" in out and "no problems found" in out
    assert "boxes per class: cat 2, dog 1, zebra 2" in out

    data = write_yolo(tmp_path / "yolo")
    report_file = tmp_path / "reports" / "check.json"
    assert main(["data", "check", str(data), "--split", "val", "--fix-report",
                 str(report_file)]) == 1
    out = capsys.readouterr().out
    assert "1  images without labels" in out and "1 problem(s) found" in out
    saved = json.loads(report_file.read_text())
    assert saved["total"] == 1 and saved["splits"][0]["images"] == 4
    assert saved["problems"][NO_LABEL]["messages"][0].endswith(
        f"3.bmp: no label file {tmp_path / 'yolo' / 'labels' / 'val' / '3.txt'}")


def test_duplicates_need_the_same_class_and_iou_above_095() -> None:
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 98], [0, 0, 100, 90], [0, 0, 100, 100]],
                     np.float32)
    pairs = duplicate_pairs(boxes, np.array([0, 0, 0, 1]))
    assert pairs[:, :2].tolist() == [[0, 1]]  # IoU 0.98; 0.90 is not one; class 1 differs
    assert pairs[0, 2] == pytest.approx(0.98)
    assert len(duplicate_pairs(boxes[:1], np.array([0]))) == 0


def test_orientation_needs_a_turn_and_a_declared_size_of_one_orientation() -> None:
    assert orientation_problem(None, (30, 40), (40, 30)) is None  # YOLO: no declared size
    assert orientation_problem((30, 40), (30, 40), (30, 40)) is None  # no EXIF turn
    assert orientation_problem((40, 30), (30, 40), (40, 30))[0] == EXIF
    assert orientation_problem((30, 40), (30, 40), (40, 30))[0] == EXIF
    assert orientation_problem((30, 30), (30, 40), (40, 30))[0] == SIZE
    assert orientation_problem((30, 41), (30, 40), (30, 40))[0] == SIZE
