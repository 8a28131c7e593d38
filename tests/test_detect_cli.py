"""``yolov3 detect`` end to end with the real yolov3-tiny weights on real photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from yolov3.cli.main import main


def test_detect_finds_cup_and_motorbike(photos, tiny_weights, tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["motorcycle_left"], folder / "MOTO.PNG")
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "out"
    code = main(["detect", str(photos["coffee"]), str(folder), "--model", "yolov3-tiny",
                 "--weights", str(tiny_weights), "--out", str(out)])
    assert code == 0
    records = json.loads((out / "detections.json").read_text())
    best = {}
    for r in records:
        assert set(r) == {"file_name", "category_id", "category_name", "bbox", "score"}
        name = r["file_name"].rsplit("/", 1)[-1]
        if r["score"] > best.get(name, {}).get("score", 0):
            best[name] = r
    assert best["coffee.png"]["category_name"] == "cup" and best["coffee.png"]["score"] >= 0.5
    assert best["coffee.png"]["category_id"] == 41
    assert best["MOTO.PNG"]["category_name"] == "motorbike" and best["MOTO.PNG"]["score"] >= 0.5
    x, y, w, h = best["coffee.png"]["bbox"]  # original-image pixels: the cup in a 600x400 photo
    assert 120 < x < 180 and 0 < y < 60 and 240 < w < 310 and 240 < h < 320
    # Annotated copies, at the original size, that differ from the input where the box is.
    picture = np.asarray(Image.open(out / "coffee.png"))
    original = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
    assert picture.shape == original.shape and (picture != original).any()
    assert (out / "MOTO.png").is_file()
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "1 unreadable images skipped" in captured.out


def test_official_weights_name_their_network(photos, tiny_weights, tmp_path) -> None:
    out = tmp_path / "out"  # no --model: yolov3-tiny's weights bring the yolov3-tiny cfg
    code = main(["detect", str(photos["coffee"]), "--weights", "yolov3-tiny", "--out", str(out)])
    assert code == 0
    records = json.loads((out / "detections.json").read_text())
    assert max(records, key=lambda r: r["score"])["category_name"] == "cup"


def test_threads_option_sets_the_engines_thread_count(photos, tiny_weights, tmp_path,
                                                      capsys) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        args = ["detect", str(photos["coffee"]), "--weights", "yolov3-tiny", "--out",
                str(tmp_path)]
        assert main([*args, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        with pytest.raises(SystemExit) as exit_:  # argparse's own error and status
            main([*args, "--threads", "0"])
        assert exit_.value.code == 2
        assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_16_bit_and_float_grey_photos_read_as_their_8_bit_pixels(photos, tmp_path) -> None:
    from yolov3.images import load_image

    grey = np.asarray(Image.open(photos["astronaut"]).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # mode I;16
    Image.fromarray(grey.astype(np.float32) / 255).save(tmp_path / "grey.tif")  # mode F
    expected = load_image(tmp_path / "grey8.png")
    assert expected.std() > 20  # a photo, not a flat image
    for name in ("grey16.png", "grey.tif"):
        np.testing.assert_array_equal(load_image(tmp_path / name), expected, err_msg=name)


def test_detect_never_overwrites_or_rereads_its_inputs(photos, tiny_weights, tmp_path,
                                                       capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["coffee"], folder / "coffee.png")
    before = (folder / "coffee.png").read_bytes()
    weights = ["--weights", "yolov3-tiny", "--img-size", "160"]
    assert main(["detect", str(folder), *weights, "--out", str(folder)]) == 1
    assert "the annotated copies would overwrite the inputs" in capsys.readouterr().err
    assert (folder / "coffee.png").read_bytes() == before
    inside = folder / "det"
    for again in ([], ["--overwrite"]):  # the second does not detect on the first's pictures
        assert main(["detect", str(folder), *weights, "--out", str(inside), *again]) == 0
    printed = capsys.readouterr().out
    assert "left out 1 files under --out" in printed
    written = sorted(p.name for p in inside.iterdir())
    assert written == ["coffee.png", "detections.json", "detections.jsonl"]


def test_detect_help_explains_every_option(capsys) -> None:
    try:
        main(["detect", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    text = capsys.readouterr().out
    for option in ("--model", "--weights", "--img-size", "--conf", "--iou", "--names",
                   "--classes", "--max-det", "--vid-stride", "--save-txt", "--save-conf",
                   "--nosave", "--timeout", "--device", "--out", "--single-label", "--threads"):
        assert option in text


def test_detect_bad_path_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["detect", str(tmp_path / "nope.jpg")]) == 1
    assert "nope.jpg: no such file or folder" in capsys.readouterr().err
