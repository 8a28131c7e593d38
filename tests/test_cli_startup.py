"""``yolov3 --help`` and ``yolov3 COMMAND --help`` load no torch (nor numpy, OpenCV, Pillow...):
the parsers are built from light modules, and ``import yolov3`` loads its public names on first
use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import yolov3
from yolov3.cli.main import build_parser
from yolov3.cli.option_table import commands

# Packages that take from a tenth of a second (numpy) to seconds (torch) to import: none of
# them, nor any module of ours that needs them, may load for --help.
HEAVY = {"torch", "torchvision", "numpy", "cv2", "PIL", "matplotlib", "onnx", "onnxruntime",
         "faster_coco_eval", "tqdm"}
COMMANDS = ["", *(name for name, _ in commands(build_parser()))]


def imported(argv: list[str]) -> set[str]:
    """The modules that ``python -X importtime -m yolov3 ARGV`` imports (it must exit 0)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "yolov3", *argv],
                          capture_output=True, text=True, env=os.environ, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: yolov3")
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_the_commands_are_found() -> None:
    assert {"detect", "val", "train", "export", "anchors", "data check", "explain layers"} <= set(
        COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[c or "yolov3" for c in COMMANDS])
def test_help_imports_nothing_heavy(command: str) -> None:
    modules = imported([*command.split(), "--help"])
    assert "yolov3.cli.main" in modules  # the list is read
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"yolov3 {command} --help imports {heavy}"


def test_importing_the_package_loads_no_torch() -> None:
    code = ("import sys, yolov3, yolov3.model.cfg; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_the_public_names_load_on_first_use() -> None:
    from yolov3 import YOLOv3, build_model, from_darknet  # the import that users write

    assert YOLOv3.__module__ == "yolov3.model.network"
    assert callable(build_model) and callable(from_darknet)
    assert set(yolov3.__all__) <= set(dir(yolov3))
    for name in yolov3.__all__:
        assert getattr(yolov3, name) is getattr(yolov3, name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        _ = yolov3.nothing
    from yolov3 import model

    assert model.YOLOLayer.__name__ == "YOLOLayer"
    assert set(model.__all__) <= set(dir(model))
