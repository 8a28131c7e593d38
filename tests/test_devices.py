"""yolov3.devices: the device a command runs on (``auto``: the GPU when there is one)."""

from __future__ import annotations

import pytest
import torch

from yolov3.cli.main import build_parser
from yolov3.devices import auto_device, describe_device, parse_device
from yolov3.errors import ConfigError
from yolov3.train.config import load_config


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu() -> None:
    expected = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert auto_device() == expected == parse_device("auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_under_torchrun_is_the_local_ranks_gpu(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))
    assert auto_device() == torch.device("cuda", torch.cuda.device_count() - 1)


def test_every_verb_and_the_presets_default_to_auto() -> None:
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # the verbs' own parsers
    with_device = [name for name, p in verbs.items()
                   if any("--device" in a.option_strings for a in p._actions)]
    assert {"detect", "val", "export", "train"} <= set(with_device)
    for name in with_device:
        action = next(a for a in verbs[name]._actions if "--device" in a.option_strings)
        assert action.default in ("auto", None), name  # train: None, the preset's auto
    assert load_config(None).train.device == "auto"
    assert load_config("finetune").train.device == "auto"


def test_the_device_is_described_with_its_hardware() -> None:
    text = describe_device(torch.device("cpu"))
    assert text.startswith("cpu")
    assert text == "cpu" or "cores)" in text


def test_a_device_that_is_not_there_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="use auto, cpu, cuda or cuda:N"):
        parse_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            parse_device("cuda")
