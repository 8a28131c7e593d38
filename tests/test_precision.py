"""The speed switches of training: each gives the result it must (CPU checks; see README for
the GPU figures)."""

from __future__ import annotations

import copy

import pytest
import torch

import yolov3
from yolov3.images import letterbox, load_image
from yolov3.train.config import load_config
from yolov3.train.optim import build_optimizer, learning_rate
from yolov3.train.step import TrainStep


def batch(photos) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images = torch.stack([letterbox(load_image(photos[n]), (224, 224))[0]
                          for n in ("coffee", "motorcycle_left")])
    targets = [torch.tensor([[41.0, 0.5, 0.45, 0.45, 0.5]]),
               torch.tensor([[3.0, 0.5, 0.5, 0.9, 0.55]])]
    return images, targets


def step(model, minibatch, **how) -> dict[str, float]:
    """One iteration at lr(1000) of a batch of 2, run as ``how`` says (TrainStep's options)."""
    config = load_config(overrides=["optimizer.batch=2", "optimizer.subdivisions=1"])
    run = TrainStep(model, build_optimizer(model, config.optimizer), **how)
    return run([minibatch], learning_rate(1000, config))


@pytest.fixture(scope="module")
def tiny(tiny_weights) -> yolov3.YOLOv3:
    return yolov3.from_darknet("yolov3-tiny", tiny_weights).train()


def test_channels_last_steps_like_contiguous(tiny, photos) -> None:
    # Noise images: the grey letterbox bars of photos make max-pool ties, whose gradient each
    # memory layout may route to a different (equal) pixel.
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    minibatch = (images, batch(photos)[1])
    plain, nhwc = copy.deepcopy(tiny), copy.deepcopy(tiny).to(memory_format=torch.channels_last)
    a = step(plain, minibatch)
    b = step(nhwc, minibatch, channels_last=True)
    assert b["total"] == pytest.approx(a["total"], rel=1e-4)  # other conv kernels
    # The update each layer received agrees to the kernels' rounding (the raw outputs differ by
    # ~2e-4; train-mode batch norm over 2 images amplifies that in the earliest gradients).
    for p0, p, q in zip(tiny.parameters(), plain.parameters(), nhwc.parameters(), strict=True):
        da, db = (p - p0).detach(), (q - p0).detach()
        assert (da - db).norm() <= 1e-2 * da.norm() + 1e-9


def test_bf16_loss_within_one_percent_of_fp32(tiny, photos) -> None:
    fp32 = step(copy.deepcopy(tiny), batch(photos))
    bf16 = step(copy.deepcopy(tiny), batch(photos), amp="bf16")
    assert bf16["total"] == pytest.approx(fp32["total"], rel=0.01)


def test_fp16_with_grad_scaler_takes_a_finite_step(tiny, photos) -> None:
    # The scaler starts at 2**16, where float16 gradients overflow: it skips those steps and
    # halves its scale until the gradients are finite, then steps.
    model = copy.deepcopy(tiny)
    before = [p.detach().clone() for p in model.parameters()]
    config = load_config(overrides=["optimizer.batch=2", "optimizer.subdivisions=1"])
    run = TrainStep(model, build_optimizer(model, config.optimizer), amp="fp16")
    for _ in range(20):
        out = run([batch(photos)], learning_rate(1000, config))
        if run.scaler.get_scale() < 2.0**16 and any(
                not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)):
            break
    assert torch.isfinite(torch.tensor(out["total"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_compiled_model_steps_like_eager() -> None:
    """``train.compile``: torch.compile (Inductor, a C++ compiler on the CPU) of a small
    network gives the eager loss and update."""
    from conftest import MICRO_CFG
    from yolov3.model import build_model, parse_cfg_text

    torch.manual_seed(0)
    eager = build_model(parse_cfg_text(MICRO_CFG)).train()
    compiled = copy.deepcopy(eager)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    minibatch = (images, [torch.tensor([[1.0, 0.5, 0.5, 0.3, 0.3]]), torch.zeros(0, 5)])
    a = step(eager, minibatch)
    b = step(compiled, minibatch, compile=True)
    assert b["total"] == pytest.approx(a["total"], rel=1e-5)
    for p, q in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)
