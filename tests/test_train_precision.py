"""Mixed-precision training: ``train.amp auto`` and bf16 against fp32 over 20 iterations."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import MICRO_CFG
from yolov3.inference.precision import native_bf16
from yolov3.model import build_model, parse_cfg_text
from yolov3.train.config import load_config
from yolov3.train.optim import build_optimizer, learning_rate
from yolov3.train.step import TrainStep, amp_mode


def test_auto_is_bf16_where_native_and_off_elsewhere() -> None:
    expected = "bf16" if native_bf16(torch.device("cpu")) else "off"
    assert amp_mode("auto", "cpu") == expected
    assert amp_mode("off", "cpu") == "off" and amp_mode("fp16", "cpu") == "fp16"
    assert load_config(overrides=["train.amp=auto"]).train.amp == "auto"
    assert load_config("finetune").train.amp == "auto"
    assert load_config().train.amp == "off"  # darknet's recipe stays fp32 unless asked


@pytest.mark.parametrize("amp", ["bf16"])
def test_twenty_mixed_precision_iterations_follow_fp32(amp) -> None:
    """From the same start and data, the loss after 20 iterations in bf16 autocast is within
    2 % of fp32's (the issue's bar), and both went down."""
    torch.manual_seed(0)
    fp32 = build_model(parse_cfg_text(MICRO_CFG)).train()
    mixed = copy.deepcopy(fp32)
    config = load_config(overrides=["optimizer.batch=4", "optimizer.subdivisions=1",
                                    "optimizer.lr=0.02", "schedule.burn_in=0"])
    runs = {"off": TrainStep(fp32, build_optimizer(fp32, config.optimizer)),
            amp: TrainStep(mixed, build_optimizer(mixed, config.optimizer), amp=amp)}
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 64, 64, generator=g)
    targets = [torch.tensor([[k % 3, 0.3 + 0.1 * k, 0.5, 0.3, 0.4]]) for k in range(4)]
    losses: dict[str, list[float]] = {k: [] for k in runs}
    for iteration in range(1, 21):
        for mode, step in runs.items():
            out = step([(images, targets)], learning_rate(iteration, config))
            losses[mode].append(out["total"])
    first, last = losses["off"][0], losses["off"][-1]
    assert last < 0.5 * first
    assert losses[amp][-1] == pytest.approx(last, rel=0.02)
