"""The fast copy's max pool: darknet's padded pool, without the padding copy where it cannot
reach a window, and the padded one where it can."""

from __future__ import annotations

import pytest
import torch

from yolov3.inference.fast import UnpaddedMaxPool
from yolov3.model.layers import MaxPool


@pytest.mark.parametrize(("size", "stride", "hw"), [(2, 2, (8, 12)), (2, 2, (7, 9)),
                                                    (2, 1, (13, 13)), (3, 2, (10, 6))])
def test_unpadded_pool_gives_darknets_pool(size, stride, hw) -> None:
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(0)) - 5  # all negative
    darknet = MaxPool(size, stride)
    got = UnpaddedMaxPool(darknet)(x)
    torch.testing.assert_close(got, darknet(x), rtol=0, atol=0)
    assert got.isfinite().all()  # no -inf from the padding reached the output


def test_an_odd_map_keeps_its_padded_windows() -> None:
    x = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    pool = UnpaddedMaxPool(MaxPool(2, 2))
    assert pool(x).shape == (1, 1, 2, 2)
    # an odd map: the padded pool keeps the last column and row as windows of their own
    y = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    assert pool(y).shape == (1, 1, 3, 3)
    assert pool(y)[0, 0, 2, 2] == y[0, 0, 4, 4]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("hw", [(16, 24), (13, 13)])
def test_low_precision_pairwise_pool_equals_the_pool(dtype, hw) -> None:
    # bf16/fp16 2x2 stride-2 pools of an even map run as two elementwise maxima; same values,
    # layout kept, on channels-last input as the fast copy feeds it
    x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(3)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    for pool in (MaxPool(2, 2), MaxPool(2, 2, padding=0)):
        got = UnpaddedMaxPool(pool)(x)
        assert got.dtype == dtype
        torch.testing.assert_close(got, pool(x), rtol=0, atol=0)
    even = UnpaddedMaxPool(MaxPool(2, 2))(x)
    if hw[0] % 2 == 0:
        assert even.is_contiguous(memory_format=torch.channels_last)
