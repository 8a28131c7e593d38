"""Our raw output equals OpenCV DNN's darknet importer, an independent implementation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import yolov3
from conftest import randomize_bn
from yolov3.images import letterbox, load_image
from yolov3.model import Decoded
from yolov3.model.cfg import builtin_cfg_path


def opencv_rows(cfg: Path, weights: Path, blob: torch.Tensor, anchors_per_layer: int) -> np.ndarray:
    """OpenCV's YOLO rows reordered to ours: OpenCV goes (y, x, anchor) per layer, we go
    (anchor, y, x); its boxes are normalised to the input size."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(blob.numpy())
    outs = net.forward(net.getUnconnectedOutLayersNames())
    rows = []
    for out in outs:
        cells = out.shape[0] // anchors_per_layer
        rows.append(out.reshape(cells, anchors_per_layer, -1).transpose(1, 0, 2).reshape(out.shape))
    return np.concatenate(rows)


def assert_matches_opencv(model: yolov3.YOLOv3, cfg: Path, weights: Path, blob: torch.Tensor):
    with torch.no_grad():
        ours = Decoded(model.eval())(blob)[0].numpy()
    theirs = opencv_rows(cfg, weights, blob, len(model.yolo_layers[0].mask))
    assert theirs.shape == ours.shape
    h, w = blob.shape[2:]
    scale = np.array([w, h, w, h], np.float32)
    np.testing.assert_allclose(theirs[:, :4] * scale, ours[:, :4], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(theirs[:, 4], ours[:, 4], rtol=1e-3, atol=1e-6)
    # OpenCV's class columns are objectness x probability, zeroed below its threshold.
    shown = theirs[:, 5:] > 0
    assert shown.any()
    np.testing.assert_allclose(theirs[:, 5:][shown], (ours[:, 4:5] * ours[:, 5:])[shown],
                               rtol=1e-3, atol=1e-6)
    return ours


def test_real_tiny_weights_match_opencv_on_a_photo(tiny_weights, photos) -> None:
    blob, _ = letterbox(load_image(photos["coffee"]), (416, 416))
    model = yolov3.from_darknet("yolov3-tiny", tiny_weights)
    ours = assert_matches_opencv(model, builtin_cfg_path("yolov3-tiny"), tiny_weights, blob[None])
    assert ours[:, 4].max() > 0.5  # the cup: a real, confident detection is part of the check


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov3", "yolov3-spp"])
def test_random_weights_written_by_us_match_opencv(tmp_path, photos, name: str) -> None:
    torch.manual_seed(0)
    model = yolov3.build_model(name)
    randomize_bn(model)
    with torch.no_grad():  # keep the random network's activations in a sane range
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(0.5)
    weights = tmp_path / f"{name}.weights"
    yolov3.save_darknet_weights(model, weights)
    blob, _ = letterbox(load_image(photos["astronaut"]), (320, 416))
    assert_matches_opencv(model, builtin_cfg_path(name), weights, blob[None])
