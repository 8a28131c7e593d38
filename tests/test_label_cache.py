"""The label cache: written on the first open, used on the next, read again where a file changed,
ignored when damaged, never written into a dataset; a cached dataset equals an uncached one."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from data_factory import NAMES, coco_json, write_coco, write_voc, write_yolo
from yolov3.datasets import cache
from yolov3.datasets.open import open_dataset
from yolov3.datasets.problems import Problems
from yolov3.datasets.yolo_txt import label_path, label_paths, parse_label_file, parse_label_files
from yolov3.errors import DataError
from yolov3.images import list_images

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # never decoded here


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Caches in a folder of the test, for datasets of any size, files trusted at once."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setattr(cache, "MIN_IMAGES", 0)
    monkeypatch.setattr(cache, "RACY_NS", 0)
    return home / "yolov3" / "labels"


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def content(ds) -> dict:
    """Everything an opened dataset holds."""
    paths = ds.source_paths()
    return {
        "files": [str(f) for f in ds.files], "ids": ds.image_ids.tolist(),
        "sizes": ds.sizes.tolist(), "offsets": ds._offsets.tolist(),
        "boxes": ds._boxes.tobytes(), "box_dtype": str(ds._boxes.dtype),
        "labels": ds._labels.tolist(), "ignore": ds._ignore.tolist(), "names": ds.names,
        "category_ids": ds.category_ids, "problems": ds.problems.messages,
        "kinds": ds.problems.kinds, "notes": ds.problems.notes, "split": ds.split,
        "sources": (sorted(map(str, paths.files)), sorted(map(str, paths.folders))),
    }


def uncached(data: Path, split: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
             **kwargs) -> dict:
    with monkeypatch.context() as m:
        m.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
        m.setattr(cache, "MIN_IMAGES", 10**9)
        ds = open_dataset(data, split, **kwargs)
        assert not ds.from_cache
        return content(ds)


def write_big_yolo(root: Path, count: int = 300, seed: int = 0) -> Path:
    """``count`` images with 1-4 boxes, a few with problems or a box dropped with a note."""
    rng = np.random.default_rng(seed)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for k in range(count):
        (root / "images" / "train" / f"{k:06d}.jpg").write_bytes(JPEG)
        n = int(rng.integers(1, 5))
        lines = [f"{rng.integers(0, 3)} {x:.6f} {y:.6f} 0.1 0.2\n"
                 for x, y in rng.uniform(0.2, 0.8, (n, 2))]
        if k % 50 == 7:
            lines.append("5 0.5 0.5 0.1 0.1\n")  # class out of range
        if k % 50 == 9:
            lines.append("0 0.5 0.5 0.0 0.1\n")  # zero width: a note
        if k % 50 != 11:  # some images without a label file
            (root / "labels" / "train" / f"{k:06d}.txt").write_text("".join(lines))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {NAMES}\n")
    return root / "data.yaml"


def test_written_on_the_first_open_and_used_on_the_next(tmp_path: Path, cache_home: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_big_yolo(tmp_path / "data")
    before = snapshot(tmp_path / "data")
    first = open_dataset(data, "train")
    assert not first.from_cache and first.labels_parsed == 300
    assert len(first.problems) == 6 and len(first.problems.notes) == 6 and len(first) == 294
    files = sorted(cache_home.glob("*.npz"))
    assert [f.name.split("-")[0] for f in files] == ["images", "yolo"]
    for f in files:  # numbers and strings, no pickles
        with np.load(f, allow_pickle=False) as archive:
            assert all(archive[k].dtype != object for k in archive.files)
    written = [(f.stat().st_ino, f.read_bytes()) for f in files]
    second = open_dataset(data, "train")
    assert second.from_cache and second.labels_parsed == 0
    assert [(f.stat().st_ino, f.read_bytes()) for f in files] == written  # not rewritten
    assert content(second) == content(first) == uncached(data, "train", monkeypatch, tmp_path)
    assert snapshot(tmp_path / "data") == before  # nothing written into the dataset


def test_a_changed_label_file_is_read_again_alone(tmp_path: Path, cache_home: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_big_yolo(tmp_path / "data")
    open_dataset(data, "train")
    label = tmp_path / "data" / "labels" / "train" / "000003.txt"
    label.write_text("2 0.5 0.5 0.5 0.25\n")
    ds = open_dataset(data, "train")
    assert not ds.from_cache and ds.labels_parsed == 1
    i = [f.name for f in ds.files].index("000003.jpg")
    assert ds.labels(i).tolist() == [2]
    assert ds.annotations(i, (100, 200)).boxes.tolist() == [[50, 37.5, 150, 62.5]]
    assert content(ds) == uncached(data, "train", monkeypatch, tmp_path)
    assert open_dataset(data, "train").from_cache  # the cache was brought up to date
    # a problem planted and one fixed
    label.write_text("7 0.5 0.5 0.5 0.25\n")
    (tmp_path / "data" / "labels" / "train" / "000007.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = open_dataset(data, "train")
    assert ds.labels_parsed == 2 and any("000003.txt:1: class 7" in m for m in ds.problems)
    assert not any("000007" in m for m in ds.problems)
    assert content(ds) == uncached(data, "train", monkeypatch, tmp_path)


def test_a_rewrite_with_the_old_size_and_mtime_is_seen(tmp_path: Path, cache_home: Path) -> None:
    data = write_big_yolo(tmp_path / "data", count=20)
    label = tmp_path / "data" / "labels" / "train" / "000001.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    old = label.stat()
    open_dataset(data, "train")
    label.write_text("1 0.5 0.5 0.2 0.2\n")  # same size
    os.utime(label, ns=(old.st_atime_ns, old.st_mtime_ns))  # and mtime set back (rsync -t)
    ds = open_dataset(data, "train")
    assert ds.labels_parsed == 1
    assert ds.labels([f.name for f in ds.files].index("000001.jpg")).tolist() == [1]


def test_files_added_and_removed(tmp_path: Path, cache_home: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_big_yolo(tmp_path / "data")
    root = tmp_path / "data"
    open_dataset(data, "train")
    (root / "images" / "train" / "zzz.jpg").write_bytes(JPEG)  # an image and its label added
    (root / "labels" / "train" / "zzz.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    ds = open_dataset(data, "train")
    assert len(ds) == 295 and ds.files[-1].name == "zzz.jpg" and ds.labels_parsed == 1
    assert content(ds) == uncached(data, "train", monkeypatch, tmp_path)
    (root / "images" / "train" / "000000.jpg").unlink()  # an image removed
    (root / "labels" / "train" / "000002.txt").unlink()  # a label file removed: no objects
    ds = open_dataset(data, "train")
    assert len(ds) == 294 and "000000.jpg" not in {f.name for f in ds.files}
    assert ds.labels([f.name for f in ds.files].index("000002.jpg")).tolist() == []
    assert content(ds) == uncached(data, "train", monkeypatch, tmp_path)
    (root / "labels" / "train" / "000011.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # one added
    ds = open_dataset(data, "train")
    assert ds.labels([f.name for f in ds.files].index("000011.jpg")).tolist() == [0]
    assert content(ds) == uncached(data, "train", monkeypatch, tmp_path)


def test_other_class_names_read_every_file_again(tmp_path: Path, cache_home: Path) -> None:
    data = write_big_yolo(tmp_path / "data", count=60)
    assert len(open_dataset(data, "train").problems) == 2  # class 5 of 3
    data.write_text(data.read_text().replace("names: [", "names: [a, b, c, "))
    ds = open_dataset(data, "train")
    assert ds.labels_parsed == 60 and not ds.problems


def test_files_changed_just_after_they_were_read_are_read_again(
        tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "RACY_NS", 60 * 10**9)  # every file "just changed"
    data = write_big_yolo(tmp_path / "data", count=20)
    open_dataset(data, "train")
    ds = open_dataset(data, "train")
    assert not ds.from_cache and ds.labels_parsed == 19  # all but the missing one (no times)


@pytest.mark.parametrize("fmt", ["yolo", "coco", "voc"])
def test_cached_equals_uncached_in_every_format(tmp_path: Path, cache_home: Path, fmt: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    if fmt == "yolo":
        data, split = write_yolo(root), "val"
        (root / "labels" / "val" / "4.txt").write_text("0 0.5 0.5 0.2\n")  # malformed
        (root / "labels" / "val" / "1.txt").write_text(  # a box dropped with a note
            (root / "labels" / "val" / "1.txt").read_text() + "1 0.5 0.5 0 0.1\n")
    elif fmt == "coco":
        data, split = write_coco(root), "val"
        coco = coco_json()
        coco["annotations"][0]["category_id"] = 2  # not a category: image 1 skipped
        coco["annotations"].append({"id": 3, "image_id": 2, "category_id": 1,  # repeated id
                                    "bbox": [5, 5, 0.5, 10], "iscrowd": 0})  # and a note
        data.write_text(json.dumps(coco))
        (root / "images" / "3.bmp").unlink()  # an image file missing
    else:
        data, split = write_voc(root), "all"
        xml = root / "Annotations" / "4.xml"
        xml.write_text(xml.read_text().replace("zebra", "horse"))  # not one of the names
        (root / "classes.txt").write_text("\n".join(NAMES) + "\n")
        (root / "Annotations" / "5.xml").write_text("<annotation>")  # broken
    before = snapshot(root)
    first = open_dataset(data, split)
    assert first.problems and not first.from_cache
    second = open_dataset(data, split)
    assert second.from_cache and second.labels_parsed == 0
    want = uncached(data, split, monkeypatch, tmp_path)
    assert content(first) == content(second) == want
    for i in range(len(second)):
        a, b = first.annotations(i), second.annotations(i)
        assert a.size == b.size and a.boxes.tolist() == b.boxes.tolist()
    with pytest.raises(DataError) as cached_error:
        open_dataset(data, split, strict=True)
    with monkeypatch.context() as m:
        m.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
        with pytest.raises(DataError) as plain_error:
            open_dataset(data, split, strict=True)
    assert str(cached_error.value) == str(plain_error.value)
    assert snapshot(root) == before


def test_coco_and_voc_are_read_again_when_a_file_changes(tmp_path: Path, cache_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    coco = write_coco(tmp_path / "coco")
    open_dataset(coco)
    (tmp_path / "coco" / "images" / "2.JPG").unlink()
    ds = open_dataset(coco)
    assert not ds.from_cache and any("2.JPG not found" in m for m in ds.problems)
    assert content(ds) == uncached(coco, "val", monkeypatch, tmp_path)
    data = coco_json()
    data["annotations"].pop()
    coco.write_text(json.dumps(data))
    ds = open_dataset(coco)
    assert not ds.from_cache and ds.num_boxes == 2  # 2.JPG's two and 4.jpeg's one gone
    assert content(ds) == uncached(coco, "val", monkeypatch, tmp_path)

    voc = write_voc(tmp_path / "voc")
    open_dataset(voc, "all")
    xml = voc / "Annotations" / "3.xml"
    xml.write_text(xml.read_text().replace(
        "</annotation>", "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>"))
    ds = open_dataset(voc, "all")
    assert ds.labels_parsed == 1
    assert ds.annotations([f.name for f in ds.files].index("3.bmp")).labels.tolist() == [1]
    assert content(ds) == uncached(voc, "all", monkeypatch, tmp_path)
    (voc / "Annotations" / "4.xml").unlink()
    ds = open_dataset(voc, "all")
    assert len(ds) == 3 and content(ds) == uncached(voc, "all", monkeypatch, tmp_path)


def test_an_unwritable_cache_folder_opens_without_a_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cache, "MIN_IMAGES", 0)
    monkeypatch.setattr(cache, "_warned", set())
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file" / "cache"))  # cannot be made
    data = write_big_yolo(tmp_path / "data", count=30)
    before = snapshot(tmp_path / "data")
    (tmp_path / "data").chmod(0o555)  # the dataset read-only too: nothing is written there
    try:
        with caplog.at_level(logging.WARNING, logger="yolov3"):
            ds = open_dataset(data, "train")
            again = open_dataset(data, "train")
    finally:
        (tmp_path / "data").chmod(0o755)
    assert len(ds) == 29 and not again.from_cache and content(ds) == content(again)
    warnings = [r for r in caplog.records if "cannot write the label cache" in r.getMessage()]
    assert len(warnings) == 1  # once, not per file or per open
    assert snapshot(tmp_path / "data") == before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "inconsistent"])
def test_a_damaged_cache_is_ignored_and_replaced(tmp_path: Path, cache_home: Path, damage: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_big_yolo(tmp_path / "data", count=100)
    want = content(open_dataset(data, "train"))
    (path,) = cache_home.glob("yolo-*.npz")
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(bytes(range(256)) * 10)
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a readable archive whose arrays do not fit together
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["offsets"] = arrays["offsets"][:-5]
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    ds = open_dataset(data, "train")
    assert not ds.from_cache and content(ds) == want
    ds = open_dataset(data, "train")  # rewritten
    assert ds.from_cache and content(ds) == want


def test_another_code_version_is_not_used(tmp_path: Path, cache_home: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_big_yolo(tmp_path / "data", count=20)
    open_dataset(data, "train")
    monkeypatch.setattr(cache, "code_version", lambda: "something else")
    assert not open_dataset(data, "train").from_cache


def test_vectorised_parsing_equals_parse_label_file(tmp_path: Path) -> None:
    texts = {
        "bom_crlf": "\ufeff0 0.5 0.5 0.2 0.2\r\n1 0.3 0.3 0.1 0.1\r\n",
        "blank_lines": "\n0 0.5 0.5 0.2 0.2\n   \n1 0.3 0.3 0.1 0.1\n\n",
        "four_fields": "0 0.5 0.5 0.2\n", "six_fields": "0 0.5 0.5 0.2 0.2 7\n",
        "not_a_number": "0 0.5 x 0.2 0.2\n1 0.3 0.3 0.1 0.1\n", "nan": "0 nan 0.5 0.2 0.2\n",
        "fraction_class": "1.5 0.5 0.5 0.2 0.2\n", "outside": "0 1.5 0.5 0.2 0.2\n",
        "clipped_to_nothing": "0 0.999 0.5 0.01 0.2\n0 1.004 0.5 0.0001 0.2\n",
        "inverted": "0 0.5 0.5 -0.2 0.2\n", "empty": "", "underscore": "0 1_0 0.5 0.2 0.2\n",
        "other_separators": "0\t0.5\t0.5\t0.2\t0.2\x0b1 0.3 0.3 0.1 0.1\x1c",
        "classes": "-0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n1e400 0.1 0.1 0.1 0.1\n",
        "clean": "2 0.123456 0.654321 0.1 0.3\n0 0.5 0.5 1 1\n",
    }
    paths = []
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text, newline="")
        paths.append(tmp_path / f"{name}.txt")
    (tmp_path / "not_utf8.txt").write_bytes(b"0 0.5 0.5 0.2 0.2\n\xff\xfe\n")
    (tmp_path / "a_folder.txt").mkdir()
    paths += [tmp_path / "not_utf8.txt", tmp_path / "a_folder.txt", tmp_path / "missing.txt"]
    paths = paths * 3  # across chunks, and files repeated
    table = parse_label_files([str(p) for p in paths], 3)
    want = Problems()
    for k, path in enumerate(paths):
        before = (len(want.messages), len(want.notes))
        parsed = parse_label_file(path, 3, want)
        assert table.fields["skipped"][k] == (parsed is None), path
        lo, hi = table.offsets[k], table.offsets[k + 1]
        if parsed is not None:
            np.testing.assert_array_equal(table.rows["classes"][lo:hi], parsed[0])
            assert table.rows["boxes"][lo:hi].tobytes() == parsed[1].tobytes(), path
        assert [(m, kind) for o, m, kind in table.problems if o == k] == list(
            zip(want.messages[before[0]:], want.kinds[before[0]:], strict=True))
        assert [(kind, m) for o, kind, m in table.notes if o == k] == want.notes[before[1]:]


def test_label_paths_equal_label_path() -> None:
    images = [Path(p) for p in (
        "/d/images/train/a.jpg", "/d/images/train/b.tar.png", "/d/images/train/.x.jpg",
        "/d/images/train/c.", "images/d.jpg", "e.jpg", "/f.jpg", "/d/JPEGImages/g.JPG",
        "/images/x/images/y/h.jpg", "/d/photos/i.jpeg", "/d/images/j")]
    assert label_paths(images) == [str(label_path(p)) for p in images]


def test_listed_images_equal_list_images(tmp_path: Path, cache_home: Path) -> None:
    root = tmp_path / "images"
    for name in ("a.jpg", "b.PNG", "sub/c.jpg", "sub/deeper/d.jpg", "z.txt", "sub/e.bmp"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(JPEG)
    (root / "empty").mkdir()
    want = list_images(root)
    assert cache.listed_images(root) == (want, False)
    got, from_cache = cache.listed_images(root)
    assert from_cache and got == want and [str(p) for p in got] == [str(p) for p in want]
    (root / "empty" / "new.jpg").write_bytes(JPEG)  # in a subfolder: that folder changed
    got, from_cache = cache.listed_images(root)
    assert not from_cache and got == list_images(root) and len(got) == len(want) + 1
    (root / "link").symlink_to(root / "sub")  # links: listed each time
    assert cache.listed_images(root) == (list_images(root), False)
    assert cache.listed_images(root) == (list_images(root), False)


def test_join_names_equals_joining() -> None:
    folder = Path("/data/images")
    names = ["a.jpg", "sub/b.jpg", "", ".", "..", "/abs/c.jpg", "d e.jpg", "./f.jpg"]
    assert cache.join_names(folder, names) == [folder / n for n in names]
    assert [str(p) for p in cache.join_names(folder, names)] == [str(folder / n) for n in names]


def test_strings_survive_the_cache() -> None:
    strings = ["", "plain", "ünïcödé", "\udcff surrogate-escaped", "a\0b", "new\nline"]
    arrays: dict[str, np.ndarray] = {}
    cache.put_strings(arrays, "s", strings)
    assert cache.get_strings(arrays, "s") == strings
    arrays["s.len"] = arrays["s.len"][:-1]
    with pytest.raises(ValueError):
        cache.get_strings(arrays, "s")
