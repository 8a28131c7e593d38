"""Shared fixtures: the real yolov3-tiny weights, real photos, the shared datasets folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

# A two-scale network in yolov3-tiny's layout with few channels: seconds per iteration on a CPU.
MICRO_CFG = """
[net]
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=32
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=5
num=6
ignore_thresh = .7

[route]
layers = -4

[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=5
num=6
ignore_thresh = .7
"""

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# The micro network with the three classes of the test datasets (tests/data_factory.py).
MICRO3_CFG = MICRO_CFG.replace("classes=5", "classes=3").replace("filters=30", "filters=24")


@pytest.fixture
def micro_cfg(tmp_path: Path) -> Path:
    """MICRO_CFG written to a file."""
    path = tmp_path / "micro.cfg"
    path.write_text(MICRO_CFG)
    return path


@pytest.fixture(scope="session")
def tiny_weights() -> Path:
    """The official yolov3-tiny.weights, fetched through the hub (cached between runs)."""
    from yolov3.weights.official import fetch_weights

    return fetch_weights("yolov3-tiny")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """Real photos shipped in scikit-image's wheel."""
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return {name: folder / f"{name}.png" for name in ("coffee", "motorcycle_left", "astronaut")}


@pytest.fixture(scope="module")
def tiny(tiny_weights: Path):
    """The official yolov3-tiny, loaded once per test module (a module may override it)."""
    import yolov3

    return yolov3.from_darknet("yolov3-tiny", tiny_weights)


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> list[np.ndarray]:
    """The three photos, decoded (RGB)."""
    from yolov3.images import load_image

    return [load_image(photos[n]) for n in ("coffee", "motorcycle_left", "astronaut")]


@pytest.fixture(scope="session")
def kangaroo_dir() -> Path:
    path = SHARED / "datasets" / "kangaroo"
    if not path.is_dir():
        pytest.skip(f"the shared kangaroo dataset is not at {path}")
    return path


def sigint_as_ctrl_c() -> None:
    """A ``subprocess.Popen`` ``preexec_fn``: SIGINT back to its default in the child, so that
    Python turns it into KeyboardInterrupt even when the tests run as a background job of a
    non-interactive shell (which starts them with SIGINT ignored, inherited across exec)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every batch norm random but sane statistics and affine terms, so that a randomly
    initialised model exercises every stored float when written and compared."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
