"""Every command turns bad input into one clear message and a non-zero exit, not a traceback.

Each case runs ``yolov3 ...`` in-process on a file broken in one way and checks the exit status
and that stderr holds a single ``yolov3 COMMAND: error:`` line naming the file and the fault.
Labels and images that a dataset can do without are skipped and reported instead (an error
with ``--strict``), so that one bad label does not cost a run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MICRO3_CFG
from data_factory import NAMES, write_coco, write_voc, write_yolo
from yolov3.cli.main import main
from yolov3.datasets.open import open_dataset
from yolov3.evaluation import evaluate
from yolov3.images import load_image
from yolov3.inference import DetectOptions, Detector
from yolov3.model import build_model
from yolov3.model.cfg import parse_cfg_text
from yolov3.weights.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from yolov3.weights.darknet import save_darknet_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and broken inputs, written once for the module."""
    root = tmp_path_factory.mktemp("inputs")
    out: dict[str, Path] = {}

    def write(name: str, content: str | bytes) -> Path:
        path = root / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        out[name] = path
        return path

    write("micro.cfg", MICRO3_CFG)
    write("unknown_section.cfg", MICRO3_CFG.replace("[maxpool]", "[maxpoool]"))
    write("unknown_key.cfg", MICRO3_CFG.replace("filters=8", "filter=8"))
    write("latin1.cfg", MICRO3_CFG.replace("leaky", "l\xe9aky").encode("latin-1"))
    model = build_model(parse_cfg_text(MICRO3_CFG))
    save_darknet_weights(model, root / "micro.weights")
    write("truncated.weights", (root / "micro.weights").read_bytes()[:30_001])
    with torch.random.fork_rng():  # random weights, the same whatever ran before
        torch.manual_seed(0)
        other = build_model("yolov3-tiny", num_classes=3)
    save_checkpoint(root / "tiny.pt", other, NAMES)  # another architecture
    out["tiny.pt"] = root / "tiny.pt"
    save_darknet_weights(other, root / "tiny.weights")
    out["tiny.weights"] = root / "tiny.weights"
    save_checkpoint(root / "micro.pt", model, NAMES)
    out["micro.pt"] = root / "micro.pt"
    write("truncated.pt", (root / "micro.pt").read_bytes()[:3000])
    write("names.txt", "\n".join(NAMES) + "\n")
    Image.fromarray(np.full((40, 50, 3), 127, np.uint8)).save(root / "photo.png")
    out["photo.png"] = root / "photo.png"
    write("corrupt.jpg", (root / "photo.png").read_bytes()[:60])
    write("a_file", "not a folder")
    write("latin1.yaml", "optimizer:\n  lr: 0.001 # d\xe9faut\n".encode("latin-1"))
    out["yolo"] = write_yolo(root / "yolo")
    out["coco"] = write_coco(root / "coco")
    out["voc"] = write_voc(root / "voc")
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_clear_error(code: int, err: str, command: str, *fragments: str) -> None:
    """A non-zero exit and one ``yolov3 COMMAND: error:`` line holding every fragment."""
    assert code != 0
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"yolov3 {command}: error:")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# The commands that build a model, each with everything but the model options and the output.
def model_command(name: str, f: dict[str, Path], out: Path) -> list[object]:
    return {
        "detect": ["detect", f["photo.png"], "--img-size", 64, "--out", out],
        "val": ["val", "--data", f["yolo"], "--names", f["names.txt"], "--img-size", 64,
                "--workers", 0, "--out", out],
        "export": ["export", "--img-size", 64, "--out", out / "model.onnx"],
        "train": ["train", "--data", f["yolo"], "--out", out, "--max-iter", 1, "--batch-size", 2,
                  "--subdivisions", 1, "--img-size", 64, "--workers", 0, "--eval-interval", 0,
                  "--set", "multiscale.interval=0"],
    }[name]


MODEL_COMMANDS = ["detect", "val", "export", "train"]


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize(("cfg", "expected"), [
    ("unknown_section.cfg", "line 39: unknown section [maxpoool]"),
    ("unknown_key.cfg", "line 9: unknown key 'filter' in [convolutional]"),
    ("latin1.cfg", "cannot read the cfg"),
])
def test_bad_cfg(command, cfg, expected, files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, *model_command(command, files, tmp_path),
                       "--model", files[cfg], "--weights", "none")
    assert_one_clear_error(code, err, command, str(files[cfg]), expected)


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize(("weights", "expected"), [
    ("truncated.weights", "is not a whole number of floats; the file is truncated"),
    ("truncated.pt", "not a complete checkpoint"),
    ("tiny.weights", "the weights were made for a different cfg"),
])
def test_bad_weights(command, weights, expected, files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, *model_command(command, files, tmp_path),
                       "--model", files["micro.cfg"], "--weights", files[weights])
    assert_one_clear_error(code, err, command, str(files[weights]), expected)


@pytest.mark.parametrize(("command", "option", "expected"), [
    ("detect", ["--batch-size", 0], "argument --batch-size: must be at least 1, got 0"),
    ("detect", ["--workers", -1], "argument --workers: must be at least 0, got -1"),
    ("val", ["--batch-size", -2], "argument --batch-size: must be at least 1, got -2"),
    ("val", ["--workers", -1], "argument --workers: must be at least 0, got -1"),
    ("export", ["--batch-size", 0], "argument --batch-size: must be at least 1, got 0"),
])
def test_counts_below_their_minimum(command, option, expected, files, tmp_path,
                                    capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in (*model_command(command, files, tmp_path), *option)])
    assert_one_clear_error(exit_.value.code, capsys.readouterr().err, command, expected)


@pytest.mark.parametrize("command", ["detect", "val", "export"])
def test_unknown_device_and_export_size(command, files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, *model_command(command, files, tmp_path), "--model",
                       files["micro.cfg"], "--weights", "none", "--device", "gpu")
    assert_one_clear_error(code, err, command, "--device gpu is not a device")
    if command == "export":  # its --img-size gets the same check as detect's and val's
        code, _, err = run(capsys, "export", "--model", files["micro.cfg"], "--weights",
                           "none", "--img-size", 0, "--out", tmp_path / "m.onnx")
        assert_one_clear_error(code, err, "export", "--img-size 0 is not a multiple of 32")


@pytest.mark.parametrize("command", ["detect", "val", "export"])
def test_a_cfg_without_weights_is_refused(command, files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, *model_command(command, files, tmp_path),
                       "--model", files["micro.cfg"])
    assert_one_clear_error(code, err, command, f"--model {files['micro.cfg']} has no official "
                           "weights", "--weights none")


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_checkpoint_of_another_network_than_model(command, files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, *model_command(command, files, tmp_path),
                       "--model", files["micro.cfg"], "--weights", files["tiny.pt"])
    expected = "another architecture" if command == "train" else "another network than"
    assert_one_clear_error(code, err, command, str(files["tiny.pt"]), expected,
                           "layers.0.conv.weight")


@pytest.mark.parametrize("command", ["detect", "val", "export"])
def test_checkpoint_brings_its_own_network(command, files, tmp_path, capsys) -> None:
    exact = ["--precision", "fp32"] if command == "detect" else []  # auto may be bf16
    code, _, err = run(capsys, *model_command(command, files, tmp_path),
                       "--weights", files["tiny.pt"], *exact)
    assert code == 0, err
    # what the command gave is what the checkpoint's own network (yolov3-tiny, three classes)
    # gives, run here directly
    model = model_from_checkpoint(load_checkpoint(files["tiny.pt"]))
    if command == "detect":
        written = json.loads((tmp_path / "detections.json").read_text())
        detector = Detector(model, DetectOptions(img_size=64))
        (expected,) = detector.detect([load_image(files["photo.png"])])
        assert len(expected) > 0  # random weights: low scores, but some above 0.25
        assert [d["category_name"] for d in written] == [NAMES[k] for k in
                                                          expected.labels.tolist()]
        # (the command runs the batch-norm-folded copy: scores agree to its rounding)
        assert [d["score"] for d in written] == pytest.approx(expected.scores.tolist(),
                                                              abs=1e-4)
    if command == "val":
        metrics = json.loads((tmp_path / "metrics.json").read_text())
        dataset = open_dataset(files["yolo"], "val")
        at_64 = DetectOptions.for_evaluation(img_size=64)
        expected = evaluate(model, dataset, at_64, model_names=NAMES, progress=False)
        assert [c["name"] for c in metrics["per_class"]] == NAMES
        assert metrics["AP"] == pytest.approx(expected["AP"], abs=1e-9)
    if command == "export":  # the graph is yolov3-tiny's, with its three classes
        import onnx

        graph = onnx.load(tmp_path / "model.onnx").graph
        assert sum(n.op_type == "Conv" for n in graph.node) == 13
        heads = [t for t in graph.initializer if t.dims[:1] == [3 * (5 + len(NAMES))]]
        assert len(heads) == 4  # two head convolutions, each a weight and a bias


def test_resume_from_a_truncated_checkpoint(files, tmp_path, capsys) -> None:
    (tmp_path / "last.pt").write_bytes(files["truncated.pt"].read_bytes())
    code, _, err = run(capsys, "train", "--resume", tmp_path)
    assert_one_clear_error(code, err, "train", str(tmp_path / "last.pt"),
                           "not a complete checkpoint")


def test_resume_from_a_model_checkpoint_without_training_state(files, tmp_path, capsys) -> None:
    (tmp_path / "last.pt").write_bytes(files["micro.pt"].read_bytes())
    code, _, err = run(capsys, "train", "--resume", tmp_path)
    assert_one_clear_error(code, err, "train", "without the training state")


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: the code a crafted checkpoint carries."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["detect", "export", "train", "resume"])
def test_checkpoint_with_a_code_payload_is_refused_and_never_runs(command, files, tmp_path,
                                                                   capsys) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "last.pt"
    torch.save({"format": "yolov3-checkpoint", "cfg": MICRO3_CFG, "names": NAMES,
                "model": _Payload(marker)}, evil)
    if command == "resume":
        args: list[object] = ["train", "--resume", tmp_path]
    else:
        args = [*model_command(command, files, tmp_path / "out"), "--model", files["micro.cfg"],
                "--weights", evil]
    code, _, err = run(capsys, *args)
    assert_one_clear_error(code, err, "train" if command == "resume" else command, str(evil),
                           "refused to load; it is not a safe yolov3 checkpoint")
    assert not marker.exists()


def test_training_config_that_is_not_utf8(files, tmp_path, capsys) -> None:
    code, _, err = run(capsys, "train", "--config", files["latin1.yaml"], "--out", tmp_path)
    assert_one_clear_error(code, err, "train", str(files["latin1.yaml"]), "not UTF-8")


# --- datasets -------------------------------------------------------------------------------

DATASET_COMMANDS = {
    "val": lambda data, out, f: ["val", "--data", data, "--model", f["micro.cfg"],
                                 "--weights", "none", "--names",
                                 f["names.txt"], "--img-size", 64, "--workers", 0, "--out", out],
    "train": lambda data, out, f: ["train", "--data", data, "--model", f["micro.cfg"],
                                   "--weights", "none", "--out", out, "--max-iter", 1,
                                   "--batch-size", 2, "--subdivisions", 1, "--workers", 0,
                                   "--eval-interval", 0],
    "data": lambda data, out, f: ["data", "convert", data, "--to", "voc", "--out", out],
    "check": lambda data, out, f: ["data", "check", data, "--workers", 1],
}


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_dataset_path_that_does_not_exist(command, files, tmp_path, capsys) -> None:
    missing = tmp_path / "no" / "such" / "data.yaml"
    code, _, err = run(capsys, *DATASET_COMMANDS[command](missing, tmp_path / "out", files))
    assert_one_clear_error(code, err, "data" if command == "check" else command,
                           f"{missing}: no such file or folder", "--data takes one of")


def broken_copy(fmt: str, tmp_path: Path) -> Path:
    """A fresh copy of a test dataset to break."""
    writer = {"yolo": write_yolo, "coco": write_coco, "voc": write_voc}[fmt]
    return writer(tmp_path / fmt)


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_coco_json_that_is_not_utf8(command, files, tmp_path, capsys) -> None:
    data = broken_copy("coco", tmp_path)
    data.write_bytes(b'{"images": [], "info": "\xff"}')
    code, out, err = run(capsys, *DATASET_COMMANDS[command](data, tmp_path / "out", files))
    if command == "check":  # a split that cannot be opened is one of the problems reported
        assert code == 1 and f"{data}: not valid JSON" in out and "Traceback" not in err
    else:
        assert_one_clear_error(code, err, command, str(data), "not valid JSON")


@pytest.mark.parametrize("command", DATASET_COMMANDS)
def test_dataset_yaml_that_is_malformed(command, files, tmp_path, capsys) -> None:
    data = broken_copy("yolo", tmp_path)
    data.write_text("path: .\ntrain: [images/val\nnames: [cat, dog, zebra]\n")
    code, _, err = run(capsys, *DATASET_COMMANDS[command](data, tmp_path / "out", files))
    assert_one_clear_error(code, err, "data" if command == "check" else command, str(data),
                           "cannot read the dataset YAML")


BAD_LABELS = {
    "non-UTF-8 YOLO label": ("yolo", "labels/val/1.txt", b"0 0.5 0.5 0.2 0.2\n\xff\xfe\n",
                             "1.txt: cannot read"),
    "malformed YOLO line": ("yolo", "labels/val/1.txt", b"0 0.5 0.5 0.2\n",
                            "1.txt:1: expected 5 fields (class xc yc w h), found 4"),
    "malformed VOC XML": ("voc", "Annotations/1.xml", b"<annotation><size>",
                          "1.xml: not a readable XML file"),
    "VOC XML that is not UTF-8": ("voc", "Annotations/1.xml",
                                  b"<annotation><size>\xff</size></annotation>",
                                  "1.xml: not a readable XML file"),
    "missing image": ("coco", "images/1.png", None, "1.png not found"),
    "corrupt image": ("yolo", "images/val/1.png", b"\x89PNG\r\n\x1a\n\0\0\0",
                      "1.png: not a readable image"),
}


def plant(case: str, tmp_path: Path) -> tuple[Path, str]:
    """A dataset with the bad file of ``case``, and the words that report it."""
    fmt, name, content, expected = BAD_LABELS[case]
    data = broken_copy(fmt, tmp_path)
    path = (data if fmt == "voc" else data.parent) / name
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    return data, expected


@pytest.mark.parametrize("case", BAD_LABELS)
def test_val_skips_a_bad_label_or_image_and_stops_with_strict(case, files, tmp_path,
                                                              capsys) -> None:
    data, expected = plant(case, tmp_path)
    args = DATASET_COMMANDS["val"](data, tmp_path / "out", files)
    if BAD_LABELS[case][0] == "voc":
        args += ["--split", "all"]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "problem(s) in the dataset" in out and expected in out
    code, _, err = run(capsys, *args, "--strict", "--overwrite")
    assert_one_clear_error(code, err, "val", expected)


@pytest.mark.parametrize("case", BAD_LABELS)
def test_data_check_reports_a_bad_label_or_image(case, files, tmp_path, capsys) -> None:
    data, expected = plant(case, tmp_path)
    code, out, err = run(capsys, "data", "check", data, "--workers", 1)
    assert code == 1 and "Traceback" not in err
    assert expected in out


def test_convert_with_strict_stops_at_a_bad_label(files, tmp_path, capsys) -> None:
    data = broken_copy("yolo", tmp_path)
    (data.parent / "labels" / "val" / "1.txt").write_bytes(b"\xff\n")
    code, _, err = run(capsys, "data", "convert", data, "--to", "coco", "--out", tmp_path / "o",
                       "--strict")
    assert_one_clear_error(code, err, "data", "1.txt: cannot read", "UTF-8")


def test_detect_on_missing_and_corrupt_images(files, tmp_path, capsys) -> None:
    model = ["--model", files["micro.cfg"], "--weights", "none", "--img-size", 64, "--out",
             tmp_path]
    code, _, err = run(capsys, "detect", tmp_path / "nope.jpg", *model)
    assert_one_clear_error(code, err, "detect", f"{tmp_path / 'nope.jpg'}: no such file")
    code, out, err = run(capsys, "detect", files["corrupt.jpg"], *model)
    assert code == 1 and "Traceback" not in err
    assert f"skipped: {files['corrupt.jpg']}: not a readable image" in err
    code, out, err = run(capsys, "detect", files["corrupt.jpg"], files["photo.png"], *model,
                         "--overwrite")
    assert code == 0 and "1 unreadable images skipped" in out


# --- output folders -------------------------------------------------------------------------

def make_immutable(folder: Path, on: bool) -> bool:
    """Set or clear the folder's immutable attribute (``chattr +i``): no one, root included,
    may create files in it. False where the tool or the file system lacks it."""
    if shutil.which("chattr") is None:
        return False
    done = subprocess.run(["chattr", "+i" if on else "-i", str(folder)], capture_output=True)
    return done.returncode == 0


@pytest.fixture(params=["under a file", "read-only"])
def unwritable(request, files, tmp_path) -> Iterator[Path]:
    """An output folder that cannot be written: below a plain file, or read-only. Root writes
    through permission bits, so there (as in CI) the read-only folder is immutable instead
    (chattr +i), or, where the file system has no such attribute, a folder of the kernel's
    /proc, where no one may create files."""
    if request.param == "under a file":
        yield files["a_file"] / "out"
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        return
    if make_immutable(folder, True):
        try:
            yield folder
        finally:
            make_immutable(folder, False)
        return
    yield Path("/proc/1/fdinfo")


def test_the_unwritable_folders_are_unwritable(unwritable) -> None:
    """The fixture's premise, for whoever runs the tests (root too): nothing can be created
    there."""
    with pytest.raises(OSError):
        unwritable.mkdir(parents=True, exist_ok=True)
        (unwritable / "probe.txt").write_text("x")


OUTPUT_COMMANDS = {
    "detect": lambda out, f: ["detect", f["photo.png"], "--model", f["micro.cfg"],
                              "--weights", "none", "--img-size", 64, "--out", out],
    "val": lambda out, f: DATASET_COMMANDS["val"](f["yolo"], out, f),
    "export": lambda out, f: ["export", "--model", f["micro.cfg"], "--weights", "none",
                              "--img-size", 64, "--out", out / "model.onnx"],
    "data": lambda out, f: ["data", "convert", f["yolo"], "--to", "coco", "--out", out],
    "check": lambda out, f: ["data", "check", f["yolo"], "--fix-report", out / "report.json"],
    "train": lambda out, f: DATASET_COMMANDS["train"](f["yolo"], out, f),
}


@pytest.mark.parametrize("command", list(OUTPUT_COMMANDS))
def test_output_folder_that_is_not_writable(command, unwritable, files, capsys) -> None:
    code, _, err = run(capsys, *OUTPUT_COMMANDS[command](unwritable, files))
    assert_one_clear_error(code, err, "data" if command == "check" else command,
                           str(unwritable), "cannot write output files there")


def test_home_of_an_unknown_user_is_a_path_that_does_not_exist(files, tmp_path,
                                                                 capsys) -> None:
    code, _, err = run(capsys, "data", "check", "~no-such-user-yolov3/data.yaml")
    assert_one_clear_error(code, err, "data", "~no-such-user-yolov3/data.yaml",
                           "no such file or folder")
    listed = tmp_path / "data.yaml"
    listed.write_text("path: ~no-such-user-yolov3/set\nval: images\nnames: [cat]\n")
    code, out, err = run(capsys, "data", "check", listed, "--workers", 1)
    assert code == 1 and "Traceback" not in err
    assert "~no-such-user-yolov3/set/images: the image folder or list does not exist" in out


# A path the file system cannot hold (a name over its 255 bytes): one line naming the path and
# the limit, in every command (it was a traceback), as an output folder and as an input.
LONG = "n" * 300


@pytest.mark.parametrize("command", list(OUTPUT_COMMANDS))
def test_an_output_name_too_long_for_the_file_system(command, files, tmp_path, capsys) -> None:
    out = tmp_path / LONG
    code, _, err = run(capsys, *OUTPUT_COMMANDS[command](out, files))
    assert_one_clear_error(code, err, "data" if command == "check" else command,
                           f"{LONG}: the name is 300 bytes", "at most 255 (ENAMETOOLONG)")


INPUT_COMMANDS = {
    "detect": lambda path, out, f: ["detect", path, "--model", f["micro.cfg"], "--weights",
                                    "none", "--img-size", 64, "--out", out],
    **DATASET_COMMANDS,
}


@pytest.mark.parametrize("command", list(INPUT_COMMANDS))
@pytest.mark.parametrize("where", ["file", "folder"])
def test_an_input_name_too_long_for_the_file_system(command, where, files, tmp_path,
                                                    capsys) -> None:
    path = tmp_path / LONG if where == "file" else tmp_path / LONG / "data.yaml"
    code, _, err = run(capsys, *INPUT_COMMANDS[command](path, tmp_path / "out", files))
    assert_one_clear_error(code, err, "data" if command == "check" else command,
                           f"{LONG}: the name is 300 bytes", "at most 255 (ENAMETOOLONG)")
