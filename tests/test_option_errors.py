"""Options and inputs that cannot work are one clear message, not a run that does nothing, a
memory traceback, torch's traceback or torch's advice.

- --conf and --iou outside [0, 1] (or NaN) are refused as they are parsed, by every command
  that has them; --img-size must be a multiple of 32 from 32 to 4096, for every command.
- An error raised in a data-loader worker is its own one-line message, not torch's
  "Caught DataError in DataLoader worker process 0. Original Traceback ...".
- A TorchScript or ONNX export passed as --weights is named as what it is, and torch's advice
  to load a file with ``weights_only=False`` is never relayed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from conftest import MICRO3_CFG
from data_factory import NAMES, write_yolo
from yolov3.checks import check_img_size
from yolov3.cli.main import build_parser, main
from yolov3.datasets.open import open_dataset
from yolov3.errors import DataError, YoloError
from yolov3.inputs.loader import MultiScale, make_train_loader, worker_error
from yolov3.model.cfg import MAX_IMG_SIZE


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    (root / "micro.cfg").write_text(MICRO3_CFG)
    (root / "names.txt").write_text("\n".join(NAMES) + "\n")
    Image.fromarray(np.full((40, 50, 3), 127, np.uint8)).save(root / "photo.png")
    return {"micro.cfg": root / "micro.cfg", "names.txt": root / "names.txt",
            "photo.png": root / "photo.png", "yolo": write_yolo(root / "yolo")}


def command(name: str, f: dict[str, Path], out: Path) -> list[object]:
    """A run of ``name`` on the micro network, untrained, at 64 pixels: everything but the
    option under test."""
    model = ["--model", f["micro.cfg"], "--weights", "none"]
    return {
        "detect": ["detect", f["photo.png"], *model, "--img-size", 64, "--out", out],
        "val": ["val", "--data", f["yolo"], *model, "--names", f["names.txt"], "--img-size",
                64, "--workers", 0, "--out", out],
        "export": ["export", *model, "--img-size", 64, "--out", out / "m.onnx"],
        "explain": ["explain", "channels", f["photo.png"], *model, "--img-size", 64, "--out",
                    out / "c.png"],
        "anchors": ["anchors", "--data", f["yolo"], "--split", "val", "--n", 2, "--img-size",
                    64, "--out", out],
    }[name]


def one_error_line(err: str, cmd: str) -> str:
    """The single ``yolov3 CMD: error:`` line of ``err`` (and no traceback)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"yolov3 {cmd}: error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- --conf and --iou ------------------------------------------------------------------------

@pytest.mark.parametrize("cmd", ["detect", "val"])
@pytest.mark.parametrize(("option", "value"), [
    ("--conf", "1.5"), ("--conf", "-1"), ("--conf", "nan"), ("--conf", "inf"),
    ("--iou", "2"), ("--iou", "-0.1"), ("--iou", "nan"),
])
def test_thresholds_outside_0_1_are_refused(cmd, option, value, files, tmp_path,
                                            capsys) -> None:
    argv = [str(a) for a in command(cmd, files, tmp_path)] + [option, value]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2  # argparse's usage error, before any model is built
    line = one_error_line(capsys.readouterr().err, cmd)
    assert f"argument {option}: must be in [0, 1]" in line and f"got {value}" in line
    assert not any(tmp_path.iterdir())  # nothing ran


@pytest.mark.parametrize("cmd", ["detect", "val"])
def test_thresholds_at_the_ends_of_0_1_are_taken(cmd, files, tmp_path) -> None:
    argv = [str(a) for a in command(cmd, files, tmp_path)]
    for conf, iou in (("0", "1"), ("1", "0"), ("0.25", "0.45")):
        args = build_parser().parse_args([*argv, "--conf", conf, "--iou", iou])
        assert (args.conf, args.iou) == (float(conf), float(iou))


def test_a_threshold_that_is_no_number_is_refused(files, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main([str(a) for a in command("detect", files, tmp_path)] + ["--conf", "high"])
    assert "argument --conf: must be a number in [0, 1], got 'high'" in one_error_line(
        capsys.readouterr().err, "detect")


# --- --img-size ------------------------------------------------------------------------------

def test_img_size_range() -> None:
    assert MAX_IMG_SIZE == 4096
    assert [check_img_size(s) for s in (32, 416, 4096)] == [32, 416, 4096]
    for size in (0, -32, 100, 4128, 32000):
        with pytest.raises(YoloError, match=f"--img-size {size} ") as refused:
            check_img_size(size)
        assert "4096" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(YoloError, match="above the largest accepted, 4096: the network's "
                       r"memory grows with the square .* 131 GB"):
        check_img_size(32000)


@pytest.mark.parametrize("cmd", ["detect", "val", "export", "explain", "anchors"])
def test_huge_img_size_is_one_error_for_every_command(cmd, files, tmp_path, capsys) -> None:
    # 8192 rather than 32000, and --conf 1 (no boxes to suppress): were the check missing, the
    # run would stay within memory and end in seconds rather than in an NMS of a million boxes.
    argv = [str(a) for a in command(cmd, files, tmp_path / "out")] + ["--img-size", "8192"]
    if cmd in ("detect", "val"):
        argv += ["--conf", "1"]
    assert main(argv) == 1
    line = one_error_line(capsys.readouterr().err, cmd)
    assert "--img-size 8192 is above the largest accepted, 4096" in line
    assert "memory grows with the square of the input side" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


# --- errors in data-loader workers -----------------------------------------------------------

def write_unreadable_yolo(root: Path, n: int = 3) -> Path:
    """A YOLO dataset whose ``n`` images are all garbage bytes, with valid labels."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for k in range(n):
        (root / "images" / f"{k}.jpg").write_bytes(b"\xff\xd8 not a jpeg at all")
        (root / "labels" / f"{k}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = root / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: [cat]\n")
    return data


@pytest.mark.parametrize("workers", [0, 1])
def test_train_loader_worker_error_is_its_one_line_message(workers, tmp_path) -> None:
    dataset = open_dataset(write_unreadable_yolo(tmp_path), "train")
    loader = make_train_loader(dataset, 2, multiscale=MultiScale(64, 64), max_iterations=1,
                               workers=workers)
    with pytest.raises(DataError) as failed:
        list(loader)
    message = str(failed.value)
    assert "\n" not in message and "Caught" not in message and "Traceback" not in message
    assert message.startswith("3 images in a row could not be read, the last: ")
    assert f"{tmp_path / 'images'}/" in message and ".jpg: not a readable image" in message


class _Broken(Dataset):
    """A dataset whose item 1 raises: a DataError, or a ValueError (a bug, not the input's)."""

    def __init__(self, error: type[Exception]) -> None:
        self.error = error

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == 1:
            raise self.error(f"item {i}: broken\nsecond line of the message")
        return torch.zeros(2)


@pytest.mark.parametrize("error", [DataError, ValueError])
def test_worker_error_is_the_workers_exception(error) -> None:
    with pytest.raises(error) as raised:
        list(DataLoader(_Broken(error), batch_size=1, num_workers=1))
    assert "Original Traceback" in str(raised.value)  # torch's re-raise
    original = worker_error(raised.value)
    assert type(original) is error
    assert str(original) == "item 1: broken\nsecond line of the message"
    assert worker_error(error("raised here")) is None


def test_training_cli_with_a_worker_reports_one_line(files, tmp_path, capsys) -> None:
    data = write_unreadable_yolo(tmp_path / "data")
    code = main(["train", "--data", str(data), "--model", str(files["micro.cfg"]), "--weights",
                 "none", "--out", str(tmp_path / "run"), "--max-iter", "1", "--batch-size", "2",
                 "--subdivisions", "1", "--img-size", "64", "--workers", "1",
                 "--eval-interval", "0", "--set", "multiscale.interval=0"])
    err = capsys.readouterr().err
    assert code == 1
    line = one_error_line(err, "train")
    assert "Caught" not in err and "worker process" not in err
    assert ".jpg: not a readable image" in line


# --- exports passed as --weights -------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(files, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The micro network exported with ``yolov3 export``, both formats."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt, name in (("torchscript", "micro.torchscript"), ("onnx", "micro.onnx")):
        assert main(["export", "--model", str(files["micro.cfg"]), "--weights", "none",
                     "--format", fmt, "--img-size", "64", "--out", str(root / name)]) == 0
        out[fmt] = root / name
    with warnings.catch_warnings():  # torch.jit.load is deprecated, and still what reads it
        warnings.simplefilter("ignore", FutureWarning)
        assert torch.jit.load(out["torchscript"])(torch.zeros(1, 3, 64, 64)).shape[-1] == 8
    return out


@pytest.mark.parametrize("cmd", ["detect", "val", "export", "train"])
@pytest.mark.parametrize(("fmt", "named"), [
    ("torchscript", "a TorchScript export (what `yolov3 export --format torchscript` writes), "
     "not weights: it runs with torch.jit.load"),
    ("onnx", "an ONNX model (what `yolov3 export` writes), not weights: it runs with ONNX "
     "Runtime"),
])
def test_an_export_as_weights_is_named(cmd, fmt, named, files, exports, tmp_path,
                                       capsys) -> None:
    if cmd == "train":
        argv: list[object] = ["train", "--data", files["yolo"], "--model", files["micro.cfg"],
                              "--out", tmp_path, "--max-iter", 1, "--batch-size", 2,
                              "--subdivisions", 1, "--img-size", 64, "--workers", 0,
                              "--eval-interval", 0]
    else:  # the last --weights counts
        argv = command(cmd, files, tmp_path)
    code = main([str(a) for a in [*argv, "--weights", exports[fmt]]])
    err = capsys.readouterr().err
    assert code == 1
    line = one_error_line(err, cmd)
    assert f"{exports[fmt]}: {named}" in line
    assert "pass the checkpoint (.pt) or darknet .weights it was exported from" in line
    assert "damaged" not in line and "weights_only" not in err.lower()
    assert "header version" not in line  # not read as darknet weights


def test_a_refused_pickle_relays_no_advice_to_load_it_anyway(files, tmp_path, capsys) -> None:
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "yolov3-checkpoint", "model": Payload()}, evil)
    code = main([str(a) for a in [*command("detect", files, tmp_path), "--weights", evil]])
    line = one_error_line(capsys.readouterr().err, "detect")
    assert code == 1 and "refused to load; it is not a safe yolov3 checkpoint (" in line
    assert "Unsupported global" in line  # what torch found, without what it advises
    for advice in ("weights_only", "weights only", "trust", "safe_globals", "allowlist"):
        assert advice not in line.lower()
    assert not (tmp_path / "ran").exists()
