"""Property-based robustness: random bytes and mutated valid files never crash a reader.

Each reader of a user's file (the darknet cfg parser and model builder, the weights and
checkpoint readers, the three label formats, the image loader) either succeeds or raises the
project's own :class:`YoloError` with a message; any other exception fails the test, and so
does an example that takes too long (hypothesis' deadline) or never returns (an alarm).
The runs are derandomised so that CI sees the same examples every time.
"""

from __future__ import annotations

import io
import json
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import MICRO_CFG
from data_factory import write_coco, write_voc, write_yolo
from yolov3.datasets.open import open_dataset
from yolov3.datasets.voc import parse_voc_xml
from yolov3.errors import YoloError
from yolov3.images import image_size, load_image
from yolov3.model import build_model
from yolov3.model.cfg import builtin_cfg_path, parse_cfg_text
from yolov3.weights.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from yolov3.weights.darknet import load_darknet_weights, save_darknet_weights
from yolov3.weights.load import load_model, load_pretrained

FUZZ = settings(
    max_examples=100,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
# Values that break naive number handling: signs, zero, overflow, not-a-number, huge integers.
EDGE_NUMBERS = ["0", "-1", "-7", "1e999", "-1e999", "nan", "inf", "1e-320", "0.5", "3.5",
                "99999999999999999999", "2147483648", "-9223372036854775809", "", "1,2", "0x10"]
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


class Hang(BaseException):
    """An example that did not return in time (a BaseException, so no reader can swallow it)."""


@contextmanager
def no_hang(seconds: float = 20.0) -> Iterator[None]:
    """Fail an example that runs past ``seconds`` (a deadline only measures finished ones)."""
    def expire(_signum: int, _frame: object) -> None:
        raise Hang(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def expect_yolo_error_or_success(call: Callable[[], object]) -> None:
    """Run ``call``; the only failure allowed is a YoloError that says something."""
    with no_hang():
        try:
            call()
        except YoloError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with one to four byte-level edits: flips, deletions, insertions, truncation,
    a repeated chunk."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "repeat"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del data[pos:]
        elif op == "repeat":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 256))]
    return bytes(data)


@st.composite
def mutated_text(draw: st.DrawFn, valid: str) -> bytes:
    """``valid`` text with numbers swapped for edge values or other numbers, and lines
    deleted, repeated or swapped: the edits a hand-edited file gets."""
    parts = _NUMBER.split(valid)
    numbers = _NUMBER.findall(valid)
    for _ in range(draw(st.integers(1, 5))):
        if not numbers:
            break
        k = draw(st.integers(0, len(numbers) - 1))
        numbers[k] = draw(st.one_of(st.sampled_from(EDGE_NUMBERS),
                                    st.integers(-10, 10_000).map(str)))
    text = parts[0] + "".join(n + p for n, p in zip(numbers, parts[1:], strict=True))
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "repeat", "swap"]))
        if op == "delete":
            del lines[i]
        elif op == "repeat":
            lines.insert(j, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines).encode()


def fuzzed(valid: bytes, text: bool = True) -> st.SearchStrategy[bytes]:
    """Random bytes, byte-mutated ``valid`` and (for text formats) edited ``valid``."""
    options = [st.binary(max_size=600), mutated(valid)]
    if text:
        options.append(mutated_text(valid.decode()))
    return st.one_of(*options)


# --- darknet cfg ----------------------------------------------------------------------------

TINY_CFG = builtin_cfg_path("yolov3-tiny").read_text()


@FUZZ
@given(data=st.one_of(fuzzed(MICRO_CFG.encode()), mutated_text(TINY_CFG)))
def test_cfg_parser_and_model_builder(data: bytes) -> None:
    def build() -> None:
        sections = parse_cfg_text(data.decode("utf-8", errors="replace"), "fuzz.cfg")
        build_model(sections)

    expect_yolo_error_or_success(build)


# --- weights and checkpoints ----------------------------------------------------------------

@pytest.fixture(scope="module")
def micro_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A darknet weights file and a checkpoint of the micro network, as bytes."""
    folder = tmp_path_factory.mktemp("weights")
    model = build_model(parse_cfg_text(MICRO_CFG))
    save_darknet_weights(model, folder / "micro.weights")
    save_checkpoint(folder / "micro.pt", model, [f"c{k}" for k in range(5)], iteration=3)
    return {name: (folder / name).read_bytes() for name in ("micro.weights", "micro.pt")}


@FUZZ
@given(data=st.data())
def test_weights_reader(data: st.DataObject, micro_files: dict[str, bytes],
                        tmp_path: Path) -> None:
    content = data.draw(fuzzed(micro_files["micro.weights"], text=False))
    path = tmp_path / "fuzz.weights"
    path.write_bytes(content)
    cfg = tmp_path / "micro.cfg"
    cfg.write_text(MICRO_CFG)
    model = build_model(cfg)
    expect_yolo_error_or_success(lambda: load_darknet_weights(model, path))
    expect_yolo_error_or_success(lambda: load_pretrained(model, path))
    expect_yolo_error_or_success(lambda: load_model(cfg, path))


@FUZZ
@given(data=st.data())
def test_checkpoint_reader(data: st.DataObject, micro_files: dict[str, bytes],
                           tmp_path: Path) -> None:
    content = data.draw(fuzzed(micro_files["micro.pt"], text=False))
    path = tmp_path / "fuzz.pt"
    path.write_bytes(content)
    cfg = tmp_path / "micro.cfg"
    cfg.write_text(MICRO_CFG)
    expect_yolo_error_or_success(lambda: model_from_checkpoint(load_checkpoint(path), path))
    expect_yolo_error_or_success(lambda: load_pretrained(build_model(cfg), path))


# --- label formats --------------------------------------------------------------------------

def read_everything(data: Path, split: str = "val") -> None:
    """Open a dataset and read every annotation and image, as training does."""
    dataset = open_dataset(data, split)
    for i in range(len(dataset)):
        dataset.annotations(i)
        dataset[i]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datasets")
    return {"coco": write_coco(root / "coco"), "yolo": write_yolo(root / "yolo"),
            "voc": write_voc(root / "voc")}


@FUZZ
@given(data=st.data())
def test_coco_json(data: st.DataObject, datasets: dict[str, Path]) -> None:
    path = datasets["coco"]
    original = path.read_bytes()
    valid = json.dumps(json.loads(original), indent=1)  # one value a line, for line edits
    path.write_bytes(data.draw(fuzzed(valid.encode())))
    try:
        expect_yolo_error_or_success(lambda: read_everything(path))
    finally:
        path.write_bytes(original)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["labels/val/1.txt", "labels/val/4.txt",
                                              "data.yaml"]))
def test_yolo_txt_and_dataset_yaml(data: st.DataObject, which: str,
                                   datasets: dict[str, Path]) -> None:
    path = datasets["yolo"].parent / which
    original = path.read_bytes()
    path.write_bytes(data.draw(fuzzed(original)))
    try:
        expect_yolo_error_or_success(lambda: read_everything(datasets["yolo"]))
    finally:
        path.write_bytes(original)


@FUZZ
@given(data=st.data(), which=st.sampled_from(["1.xml", "2.xml"]))
def test_voc_xml(data: st.DataObject, which: str, datasets: dict[str, Path]) -> None:
    path = datasets["voc"] / "Annotations" / which
    original = path.read_bytes()
    path.write_bytes(data.draw(fuzzed(original)))
    try:
        expect_yolo_error_or_success(lambda: read_everything(datasets["voc"], "all"))
    finally:
        path.write_bytes(original)


# --- images ---------------------------------------------------------------------------------

def encoded_images() -> dict[str, bytes]:
    """A small picture in every common format; the JPEG carries an EXIF orientation."""
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    out = {}
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"):
        buffer = io.BytesIO()
        if fmt == "JPEG":
            exif = Image.Exif()
            exif[0x0112] = 6
            image.save(buffer, format=fmt, exif=exif)
        else:
            image.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


IMAGES = encoded_images()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on malformed metadata
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@FUZZ
@given(data=st.one_of(st.binary(max_size=600),
                      st.sampled_from(sorted(IMAGES)).flatmap(lambda f: mutated(IMAGES[f]))))
def test_image_loader(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    expect_yolo_error_or_success(lambda: load_image(path))
    expect_yolo_error_or_success(lambda: image_size(path))


# --- what fuzzing found ---------------------------------------------------------------------

def test_inputs_that_fuzzing_found_stay_clear_errors(micro_files: dict[str, bytes],
                                                     datasets: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """Each of these crashed a reader with another exception before it was fixed."""
    last_yolo = MICRO_CFG.rindex("[yolo]")
    no_anchors = MICRO_CFG[:last_yolo] + re.sub(r"anchors = .*\n", "", MICRO_CFG[last_yolo:])
    for text, expected in [(no_anchors, "key 'anchors': required key is missing"),
                           (MICRO_CFG.replace("size=3", "size=-1", 1), "must be at least 1"),
                           (MICRO_CFG.replace("filters=32", "filters=99999999"),
                            "a layer may have")]:
        with pytest.raises(YoloError, match=re.escape(expected)):
            build_model(parse_cfg_text(text, "fuzz.cfg"))

    xml = tmp_path / "inf.xml"
    xml.write_text("<annotation><size><width>1e999</width><height>5</height></size>"
                   "</annotation>")
    with pytest.raises(YoloError, match="<size> is infx5, not an image size"):
        parse_voc_xml(xml)

    coco = json.loads(datasets["coco"].read_text())
    coco["images"][0]["height"] = float("inf")
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(YoloError, match=r"image #0 .* needs 'id', 'file_name', 'width' and"):
        open_dataset(path, images=datasets["coco"].parent / "images")

    yaml_file = datasets["yolo"].parent / "data.yaml"
    original = yaml_file.read_text()
    try:
        yaml_file.write_text("val:\nnames: [a]\n")
        with pytest.raises(YoloError, match="'val' must be an image folder"):
            open_dataset(yaml_file)
        yaml_file.write_text("val: images/val\nnames: {0: a, x: b}\n")
        with pytest.raises(YoloError, match="'names' keys must be the class indices"):
            open_dataset(yaml_file)
    finally:
        yaml_file.write_text(original)

    bomb = bytearray(IMAGES["GIF"])
    bomb[6:10] = b"\xff\xff\xff\xff"  # a 65535 x 65535 logical screen
    image = tmp_path / "bomb.gif"
    image.write_bytes(bytes(bomb))
    with pytest.raises(YoloError, match=r"not a readable image .*decompression bomb"):
        load_image(image)

    spanning = bytearray(micro_files["micro.pt"])
    locator = spanning.rindex(b"PK\x06\x07")  # the zip64 end locator: say it spans 2 disks
    spanning[locator + 16:locator + 20] = (2).to_bytes(4, "little")
    checkpoint = tmp_path / "spanning.pt"
    checkpoint.write_bytes(bytes(spanning))
    with pytest.raises(YoloError, match="not a complete checkpoint"):
        load_checkpoint(checkpoint)
