"""The fast inference path gives the plain model's output and detections."""

from __future__ import annotations

import pytest
import torch

import yolov3
from conftest import randomize_bn
from yolov3.backends import make_detector
from yolov3.images import letterbox, load_image
from yolov3.inference import DetectOptions, Detector
from yolov3.inference.fast import FastModel, fast_if_exact, fold_batch_norm, is_exact
from yolov3.model import Decoded
from yolov3.model.layers import ConvBlock


@pytest.fixture(scope="module")
def photo_batch(photos) -> torch.Tensor:
    return torch.stack([letterbox(load_image(photos[n]), (256, 320))[0]
                        for n in ("coffee", "motorcycle_left")])


def plain(model: yolov3.YOLOv3, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return Decoded(model.eval())(x)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_folding_removes_batch_norm_and_keeps_outputs(tiny, photo_batch) -> None:
    fused = fold_batch_norm(tiny)
    blocks = [m for m in fused.modules() if isinstance(m, ConvBlock)]
    assert blocks and all(b.bn is None and b.conv.bias is not None for b in blocks)
    assert not any(p.requires_grad for p in fused.parameters())
    assert tiny.layers[0].bn is not None  # the original is left alone
    assert_close(plain(fused, photo_batch), plain(tiny, photo_batch))


def test_folding_a_random_yolov3_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = yolov3.build_model("yolov3")
    randomize_bn(model)
    x = torch.rand(1, 3, 96, 64)
    assert_close(plain(fold_batch_norm(model), x), plain(model, x))


@pytest.mark.parametrize("mode", ["eager", "trace"])
def test_fast_model_equals_plain(tiny, photo_batch, mode: str) -> None:
    fast = FastModel(tiny, mode)
    assert_close(fast(photo_batch), plain(tiny, photo_batch))
    other = photo_batch[:1, :, :224, :224].contiguous()  # another shape: another trace
    assert_close(fast(other), plain(tiny, other))
    assert len(fast._traced) == (2 if mode == "trace" else 0)


def test_fast_detector_gives_the_plain_detections(tiny, photos) -> None:
    images = [load_image(photos[n]) for n in ("coffee", "motorcycle_left", "astronaut")]
    options = DetectOptions(img_size=320)
    expected = Detector(tiny, options).detect(images)
    found = make_detector(tiny, options).detect(images)
    assert isinstance(make_detector(tiny, options).model, FastModel)
    assert [d.labels.tolist() for d in found] == [d.labels.tolist() for d in expected]
    assert 41 in found[0].labels.tolist()  # the cup
    for a, b in zip(found, expected, strict=True):
        torch.testing.assert_close(a.boxes, b.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=0, atol=1e-5)


def test_an_inexact_copy_is_caught(tiny) -> None:
    fast = FastModel(tiny)
    assert is_exact(fast, tiny)
    with torch.no_grad():
        fast.net.net.layers[0].conv.bias += 1e-2
    assert not is_exact(fast, tiny)


def test_fast_if_exact_falls_back_to_the_plain_model(caplog) -> None:
    class Wrong(yolov3.YOLOv3):  # a network whose batch norm the folding cannot see
        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            scale = 1.01 if self.layers[0].bn is not None else 1.0
            return [r * scale for r in super().forward(x)]

    model = Wrong(yolov3.build_model("yolov3-tiny").sections).eval()
    fallback = fast_if_exact(model)
    assert isinstance(fallback, Decoded) and fallback.net is model
    assert "differs" in caplog.text


def test_thread_count_is_honoured(tiny) -> None:
    before = torch.get_num_threads()
    try:
        FastModel(tiny, num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_unknown_mode_is_refused(tiny) -> None:
    with pytest.raises(ValueError, match="unknown mode 'fastest'"):
        FastModel(tiny, "fastest")
