"""Darknet's [maxpool] without its padding copy where PyTorch's ceil mode takes the same
windows (values and gradients equal to the padded pool), and the fast copy's bf16 2x2 pool
as two elementwise maxima (values equal to the pool)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from yolov3.inference.fast import PairwiseMaxPool
from yolov3.model.layers import MaxPool


def padded_reference(pool: MaxPool, x: torch.Tensor) -> torch.Tensor:
    """Darknet's pool as written: -infinity padding, then the max over each window."""
    before, after = pool.pad
    x = F.pad(x, (before, after, before, after), value=float("-inf"))
    return F.max_pool2d(x, pool.pool.kernel_size, pool.pool.stride)


@pytest.mark.parametrize(("size", "stride", "hw"), [(2, 2, (8, 12)), (2, 2, (7, 9)),
                                                    (2, 1, (13, 13)), (3, 2, (10, 6)),
                                                    (3, 1, (5, 5)), (2, 2, (1, 3))])
def test_pool_gives_darknets_padded_pool_and_its_gradients(size, stride, hw) -> None:
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0)) - 5  # all negative
    x = x.round(decimals=1)  # ties inside windows: the gradient must pick the same pixel
    darknet = MaxPool(size, stride)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = darknet(a), padded_reference(darknet, b)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert got.isfinite().all()  # no -inf from the padding reached the output
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_an_odd_map_keeps_its_padded_windows() -> None:
    pool = MaxPool(2, 2)
    assert pool(torch.randn(1, 1, 4, 4)).shape == (1, 1, 2, 2)
    # an odd map: the last column and row are windows of their own, as darknet pads them
    y = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    assert pool(y).shape == (1, 1, 3, 3)
    assert pool(y)[0, 0, 2, 2] == y[0, 0, 4, 4]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("hw", [(16, 24), (13, 13)])
def test_low_precision_pairwise_pool_equals_the_pool(dtype, hw) -> None:
    # bf16 2x2 stride-2 pools of an even map run as two elementwise maxima; same values,
    # layout kept, on channels-last input as the fast copy feeds it
    x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(3)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    # (padding 2 puts a window before the map: the padded pool, one more window each way)
    for pool in (MaxPool(2, 2), MaxPool(2, 2, padding=0), MaxPool(2, 1), MaxPool(2, 2, padding=2)):
        got = PairwiseMaxPool(pool)(x)
        assert got.dtype == dtype
        torch.testing.assert_close(got, padded_reference(pool, x), rtol=0, atol=0)
    if hw[0] % 2 == 0:
        assert PairwiseMaxPool(MaxPool(2, 2))(x).is_contiguous(memory_format=torch.channels_last)
