"""Inference precision: what ``auto`` picks, and bf16 against fp32 on real COCO photos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yolov3.backends import make_detector
from yolov3.datasets.open import open_dataset
from yolov3.errors import YoloError
from yolov3.evaluation import evaluate
from yolov3.images import letterbox, load_image
from yolov3.inference import DetectOptions
from yolov3.inference.fast import FastModel
from yolov3.inference.precision import native_bf16, native_int8, resolve_precision

COCO128 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "coco128-train"


def test_auto_is_bf16_only_where_it_is_native() -> None:
    cpu = torch.device("cpu")
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text().split() if cpuinfo.exists() else []
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    assert native_bf16(cpu) == has_bf16 or not flags
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16") == "bf16"
    with pytest.raises(YoloError, match="fp16 inference needs a CUDA GPU"):
        resolve_precision("fp16", cpu)
    with pytest.raises(YoloError, match="unknown precision 'int4'"):
        resolve_precision("int4", cpu)
    # int8 is never auto (it needs calibration images), and runs on the CPU only
    assert resolve_precision("int8", cpu) == "int8"
    with pytest.raises(YoloError, match="int8 inference runs on the CPU"):
        resolve_precision("int8", "cuda")


def test_int8_dot_products_are_read_from_the_cpu() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.exists() else set()
    if flags:
        assert set(native_int8()) == flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def test_bf16_copy_runs_in_bf16_and_keeps_the_scores(tiny, photos) -> None:
    x = torch.stack([letterbox(load_image(photos[n]), (320, 320))[0]
                     for n in ("coffee", "motorcycle_left")])
    fp32, bf16 = FastModel(tiny), FastModel(tiny, precision="bf16")
    assert all(p.dtype == torch.bfloat16 for p in bf16.net.parameters())
    a, b = fp32(x), bf16(x)
    assert b.dtype == torch.float32  # decoded in float32
    # bf16 keeps 8 bits of mantissa: the detection scores (objectness x class probability)
    # move by a few thousandths (measured 0.005 at most here, 0.0004 on average per output)
    score_a, score_b = a[..., 4:5] * a[..., 5:], b[..., 4:5] * b[..., 5:]
    assert (score_a - score_b).abs().max() < 0.01
    assert (a[..., 4:] - b[..., 4:]).abs().mean() < 0.002
    # the most confident detections are the same boxes, to a pixel or two (measured 1.5)
    best = score_a.amax(-1).flatten().argsort(descending=True)[:10]
    assert (a[..., :4].flatten(0, 1)[best] - b[..., :4].flatten(0, 1)[best]).abs().max() < 3


def test_onnxruntime_refuses_another_precision(tiny) -> None:
    with pytest.raises(YoloError, match="runs in fp32"):
        make_detector(tiny, DetectOptions(backend="onnxruntime", precision="bf16"))


@pytest.mark.skipif(not COCO128.is_dir(), reason="shared/datasets/coco128-train is not here")
def test_bf16_keeps_the_coco_ap50_of_fp32(tiny) -> None:
    """The issue's accuracy bar: on 128 real COCO photos with the official yolov3-tiny at 416,
    bf16's AP50 within 0.005 of fp32's (whose AP50 here is about 0.42, see the set's README)."""
    data = open_dataset(COCO128 / "data.yaml", "train")
    fp32 = evaluate(tiny, data, DetectOptions.for_evaluation(img_size=416), progress=False)
    bf16 = evaluate(tiny, data, DetectOptions.for_evaluation(img_size=416, precision="bf16"),
                    progress=False)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert 0.35 < fp32["AP50"] < 0.5
    assert abs(bf16["AP50"] - fp32["AP50"]) <= 0.005
    assert abs(bf16["AP"] - fp32["AP"]) <= 0.005
