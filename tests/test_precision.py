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


def update(model, minibatch, amp: str = "off", tries: int = 1) -> tuple[torch.Tensor, dict, int]:
    """The weight update of the first step that ``TrainStep(amp=amp)`` takes from ``model`` (a
    copy), all parameters flattened, with its loss and the number of calls it took. No weight
    decay: the update is -lr x the gradient, so the updates compare the gradients. fp16's
    GradScaler starts at 2**16, where the float16 gradients overflow: it skips such steps
    (changing nothing) and halves its scale until one is finite."""
    model = copy.deepcopy(model)
    config = load_config(overrides=["optimizer.batch=2", "optimizer.subdivisions=1",
                                    "optimizer.decay=0"])
    before = [p.detach().clone() for p in model.parameters()]
    run = TrainStep(model, build_optimizer(model, config.optimizer), amp=amp)
    for k in range(1, tries + 1):  # noqa: B007 (k: the calls it took)
        scale = run.scaler.get_scale()
        out = run([minibatch], learning_rate(1000, config))
        if any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True)):
            break
        assert amp == "fp16", "a step that changed nothing"
        assert run.scaler.get_scale() == scale / 2  # skipped: the scale halves
    delta = torch.cat([(p.detach() - b).flatten() for b, p in
                       zip(before, model.parameters(), strict=True)]).double()
    return delta, out, k


def compare(delta: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(relative error, cosine) of an update against the reference update."""
    rel = float((delta - reference).norm() / reference.norm())
    cos = float(delta @ reference / (delta.norm() * reference.norm()))
    return rel, cos


@pytest.fixture(scope="module")
def small_batch(photos) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The two photos at 160 x 160: fp16 on a CPU is slow, and the scaler needs a few tries."""
    images = torch.stack([letterbox(load_image(photos[n]), (160, 160))[0]
                          for n in ("coffee", "motorcycle_left")])
    return images, batch(photos)[1]


@pytest.fixture(scope="module")
def fp32_update(tiny, small_batch) -> tuple[torch.Tensor, dict]:
    delta, out, _ = update(tiny, small_batch)
    return delta, out


# Tolerances, against the fp32 update of the same step (measured on this batch: bf16 relative
# error 0.106, cosine 0.994; fp16 0.026, cosine 0.9997). bfloat16 keeps 8 significant bits
# (rounding 2**-9 per operation), float16 11 (2**-12); through 13 layers and train-mode batch
# norm over two images the gradients differ by some per cent. The bounds are twice the
# measurements; a lost unscaling (a 2**12 times larger fp16 update), a gradient from the wrong
# loss or a step that ignores ``amp`` (relative error 0) falls outside them.
BF16_REL, BF16_COS = 0.2, 0.98
FP16_REL, FP16_COS = 0.05, 0.999


def test_bf16_step_updates_the_weights_as_fp32_does(tiny, small_batch, fp32_update) -> None:
    reference, ref_out = fp32_update
    delta, out, _ = update(tiny, small_batch, amp="bf16")
    rel, cos = compare(delta, reference)
    assert 1e-3 < rel < BF16_REL and cos > BF16_COS
    assert out["total"] == pytest.approx(ref_out["total"], rel=0.01)


def test_fp16_step_with_grad_scaler_updates_the_weights_as_fp32_does(tiny, small_batch,
                                                                    fp32_update) -> None:
    reference, ref_out = fp32_update
    delta, out, calls = update(tiny, small_batch, amp="fp16", tries=20)
    assert calls > 1  # at 2**16 the float16 gradients overflow: the scaler had to back off
    rel, cos = compare(delta, reference)
    assert 1e-3 < rel < FP16_REL and cos > FP16_COS
    assert out["total"] == pytest.approx(ref_out["total"], rel=0.01)


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
