"""Darknet's optimiser: parameter groups, the update rule, the lr schedule, accumulation, resume."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import MICRO_CFG
from yolov3 import build_model
from yolov3.model import parse_cfg_text
from yolov3.train import (
    build_optimizer,
    learning_rate,
    load_config,
    lr_factor,
    param_groups,
)
from yolov3.train.step import TrainStep


def small_model():
    return build_model(parse_cfg_text(MICRO_CFG, "<micro>"))


@pytest.fixture(scope="module")
def config():
    return load_config()


def test_lr_schedule_values(config):
    factors = {i: lr_factor(i, config.schedule)
               for i in (0, 1, 500, 999, 1000, 399999, 400000, 449999, 450000, 500200)}
    assert factors == pytest.approx({
        0: 0.0, 1: 1e-12, 500: 0.5**4, 999: 0.999**4, 1000: 1.0, 399999: 1.0, 400000: 0.1,
        449999: 0.1, 450000: 0.01, 500200: 0.01,
    }, rel=1e-12)
    assert learning_rate(500, config) == pytest.approx(0.001 / 64 * 0.0625)
    assert learning_rate(400000, config) == pytest.approx(0.001 / 64 * 0.1)


def test_schedule_is_configurable():
    config = load_config(overrides=["schedule.burn_in=10", "schedule.burn_in_power=2",
                                    "schedule.steps=[20,30,40]", "schedule.scales=[0.5,4,0.1]"])
    got = [lr_factor(i, config.schedule) for i in (5, 10, 19, 20, 30, 40)]
    assert got == pytest.approx([0.25, 1.0, 1.0, 0.5, 2.0, 0.2])


def test_param_groups_decay_conv_weights_only():
    model = build_model("yolov3-tiny")
    decayed, plain = param_groups(model, 0.032)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert [id(p) for p in decayed["params"]] == [id(m.weight) for m in convs]
    assert decayed["weight_decay"] == 0.032 and plain["weight_decay"] == 0.0
    # BN scales and shifts and the two head biases, nothing twice, nothing missing.
    bn = [p for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert len(plain["params"]) == len(bn) + 2
    everything = {id(p) for p in model.parameters()}
    assert {id(p) for g in (decayed, plain) for p in g["params"]} == everything
    assert len(decayed["params"]) + len(plain["params"]) == len(everything)


def test_sgd_is_darknets_update(config):
    # Darknet (update_convolutional_layer), with its updates = minus the summed gradient:
    #   u = momentum * u - grad - decay * batch * w (weights),  u = momentum * u - grad (biases)
    #   w = w + lr / batch * u
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3))
    opt_cfg = config.optimizer
    optimizer = build_optimizer(model, opt_cfg)
    assert optimizer.defaults["lr"] == pytest.approx(0.001 / 64)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.0005 * 64)
    assert optimizer.defaults["momentum"] == 0.9
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    updates = {n: torch.zeros_like(p) for n, p in expected.items()}
    for iteration in (999, 1000):
        grads = {n: torch.randn_like(p) for n, p in expected.items()}
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(iteration, config)
        optimizer.step()
        rate = opt_cfg.lr * lr_factor(iteration, config.schedule)
        for n, w in expected.items():
            decay = opt_cfg.decay * opt_cfg.batch if n == "0.weight" else 0.0
            updates[n] = opt_cfg.momentum * updates[n] - grads[n] - decay * w
            expected[n] = w + rate / opt_cfg.batch * updates[n]
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=1e-6, atol=1e-9)


def tiny_batch(seed: int, n: int = 4):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 64, 96, generator=gen)
    targets = [torch.tensor([[k % 4, 0.3 + 0.1 * k, 0.5, 0.2, 0.3]]) for k in range(n)]
    targets[-1] = torch.zeros(0, 5)
    return images, targets


def test_subdivisions_accumulate_to_the_full_batch(config):
    # With batch norm on running statistics, 2 subdivisions of 2 images step exactly like one
    # pass over all 4 (darknet sums the gradients of its subdivisions).
    model = small_model().eval()
    twin = copy.deepcopy(model)
    images, targets = tiny_batch(0)
    config = load_config(overrides=["optimizer.batch=4", "optimizer.subdivisions=2"])
    split = [(images[:2], targets[:2]), (images[2:], targets[2:])]
    lr = learning_rate(1000, config)
    got = TrainStep(model, build_optimizer(model, config.optimizer))(split, lr)
    ref = TrainStep(twin, build_optimizer(twin, config.optimizer))([(images, targets)], lr)
    assert got["total"] == pytest.approx(ref["total"], rel=1e-5)
    assert got["lr"] == pytest.approx(0.001 / 4)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def run(model, optimizer, config, iterations):
    step = TrainStep(model, optimizer)
    for iteration in iterations:
        images, targets = tiny_batch(iteration, 2)
        step([(images, targets)], learning_rate(iteration, config))


def test_resume_continues_the_same_curve_and_weights(config):
    config = load_config(overrides=["optimizer.batch=2", "optimizer.subdivisions=1",
                                    "optimizer.lr=0.01", "schedule.burn_in=3",
                                    "schedule.steps=[5]", "schedule.scales=[0.1]"])
    torch.manual_seed(0)
    straight = small_model().train()
    interrupted = copy.deepcopy(straight)
    opt = build_optimizer(straight, config.optimizer)
    run(straight, opt, config, range(1, 7))

    first = build_optimizer(interrupted, config.optimizer)
    run(interrupted, first, config, range(1, 4))
    saved = copy.deepcopy((interrupted.state_dict(), first.state_dict()))
    resumed = small_model().train()
    resumed.load_state_dict(saved[0])
    second = build_optimizer(resumed, config.optimizer)
    second.load_state_dict(saved[1])
    run(resumed, second, config, range(4, 7))

    assert second.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.01 / 2 * 0.1
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(p, q)


def test_non_finite_loss_skips_the_step(config):
    model = small_model().eval()
    before = copy.deepcopy(model.state_dict())
    images, targets = tiny_batch(0, 2)
    images[0, 0, 0, 0] = float("nan")
    out = TrainStep(model, build_optimizer(model, config.optimizer))([(images, targets)],
                                                                     learning_rate(1000, config))
    assert not torch.isfinite(torch.tensor(out["total"]))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
