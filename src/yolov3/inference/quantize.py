"""int8 inference: the network's convolutions in 8-bit integers, calibrated on the user's images.

ONNX Runtime's static quantisation of an exported graph (``quantize_static``, QDQ format): each
quantised tensor gets a ``QuantizeLinear`` / ``DequantizeLinear`` pair, which ONNX Runtime fuses
into integer kernels (``QLinearConv``, ...; on a CPU with VNNI or AMX, int8 dot products). The
weights are int8, symmetric, one scale per output channel; the activations uint8 with one
scale and zero point per tensor (uint8 x int8 is what VNNI's ``vpdpbusd`` multiplies), from
min-max calibration with a moving average: the range is the mean over the calibration images
of each image's smallest and largest value, so that one unusual picture does not coarsen the
steps for all.

What stays float32: the first :data:`FLOAT_FIRST_CONVS` convolutions (at full and half
resolution their per-tensor ranges are widest next to their typical values: alone they carried
half of int8's error in the scores), the head convolutions (their outputs are the logits the
decoding turns into boxes and scores) and everything after them: the decoding, and the NMS of a
graph exported with it. The max pools stay float too: darknet pads them with -infinity, which
min-max calibration cannot range.

Measured with the official yolov3-tiny at 416 on the 128 photos of coco128 (fp32: AP50 0.4241,
AP 0.2087): over seven calibration sets (16 to 128 images of coco128 or of the kangaroo photos)
int8 gave AP50 0.4155 to 0.4285 and AP 0.198 to 0.207; every layer in int8 lost 0.026 AP50.
AP50 on 128 images of 80 classes moves by about 0.01 with any small change of the scores, so
the set it is calibrated on matters that much.

PyTorch's own path, PT2E with ``X86InductorQuantizer`` (in the ``torchao`` package for torch
2.14), was measured against this one on yolov3-tiny at 416, batch 1, side by side on the
2-core Zen 4 under other load: it ran faster (fastest runs 23 to 27 ms against 32 to 61 ms
here, medians 52 against 100 ms with ``OMP_WAIT_POLICY=PASSIVE``), with AP50 0.4164. It is not
the engine here because it needs a new dependency, ``torch.compile`` (18 to 45 s per input
shape, a C++ compiler at run time), and a second int8 path beside the ONNX graph that
``yolov3 export --precision int8`` writes anyway; it is the way to a faster int8.

Calibration needs images like those the model will see: ``--calib DATASET|FOLDER``, a dataset
as ``--data`` takes it (its train split) or a folder of images. There is no default: the
images being detected or evaluated would be a leak for ``val``, and there are no packaged
photos that stand for a user's data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from yolov3.choices import DEFAULT_CALIB_IMAGES
from yolov3.datasets.base import evenly_spaced
from yolov3.datasets.open import DIR_YAMLS, dataset_splits, open_dataset
from yolov3.datasets.voc import find_voc_folders
from yolov3.errors import DataError, YoloError
from yolov3.fileio import expand_home
from yolov3.images import ImageFiles, letterbox, list_images

log = logging.getLogger("yolov3")

# The operators quantised where they lie before a convolution (see quantized_nodes).
QUANTIZED_OPS: tuple[str, ...] = ("Conv", "LeakyRelu", "Add", "Concat", "Resize")
# The convolutions nearest the input that stay float (see the module docstring).
FLOAT_FIRST_CONVS = 2
CALIB_HELP = ("--calib takes a dataset as --data does (its train split is used) or a folder of "
              "images, like those the model will see")


class CalibrationImages(Sequence[np.ndarray]):
    """``count`` images of ``images``, evenly spaced over it (a sorted folder or a dataset
    often groups similar pictures, so the first ``count`` would be less varied); read on
    access. ``source`` names where they come from, for messages."""

    def __init__(self, images: Sequence[np.ndarray], count: int, source: str) -> None:
        if count < 1:
            raise YoloError(f"the number of calibration images must be at least 1, got {count}")
        if len(images) == 0:
            raise DataError(f"{source}: no calibration images there. {CALIB_HELP}")
        self.images, self.source = images, source
        self.picks = evenly_spaced(len(images), count)

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[int(self.picks[i])]


def _is_dataset_folder(path: Path) -> bool:
    return find_voc_folders(path) is not None or any((path / y).is_file() for y in DIR_YAMLS)


def calibration_images(
    source: str | Path | Sequence[np.ndarray], count: int = DEFAULT_CALIB_IMAGES
) -> CalibrationImages:
    """The images int8 calibration runs on: ``count`` of ``source``, a dataset as ``--data``
    takes it (its ``train`` split, else its first), a folder of image files (searched
    recursively), or a sequence of (H, W, 3) uint8 RGB images. A path that is none of these is
    a :class:`DataError` naming it."""
    if not isinstance(source, (str, Path)):
        return CalibrationImages(source, count, "the calibration images")
    path = expand_home(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder for the calibration images. "
                        f"{CALIB_HELP}")
    if path.is_dir() and not _is_dataset_folder(path):
        return CalibrationImages(ImageFiles(list_images(path)), count, str(path))
    splits = dataset_splits(path)
    dataset = open_dataset(path, "train" if "train" in splits else splits[0])
    return CalibrationImages(dataset.pixels, count, f"{path} ({dataset.split} split)")


class CalibrationFeeds:
    """ONNX Runtime's calibration data reader: the graph's inputs for each batch of
    calibration images, letterboxed to ``input_hw`` (float32 in [0, 1]), ``batch`` at a time,
    with ``extra_inputs`` (fixed values of the graph's other inputs) alongside.

    The images are read and letterboxed once, here; an unreadable one is skipped with a
    warning, none readable is a :class:`DataError`. ``len`` is the number of batches, and
    ``set_range`` makes ``get_next`` give batches ``start`` to ``end`` and then None (how
    ONNX Runtime calibrates a few batches at a time)."""

    def __init__(self, images: CalibrationImages, input_name: str, input_hw: tuple[int, int],
                 batch: int = 1, extra_inputs: dict[str, np.ndarray] | None = None) -> None:
        read = []
        for i in range(len(images)):
            try:
                read.append(letterbox(images[i], input_hw)[0].numpy())
            except DataError as exc:
                log.warning("calibration: skipped %s", exc)
        if len(read) < batch:
            raise DataError(f"{images.source}: {len(read)} of the {len(images)} calibration "
                            f"images could be read, fewer than the graph's batch of {batch}")
        self.images = len(read) - len(read) % batch
        self.batches = [np.stack(read[k : k + batch]) for k in range(0, self.images, batch)]
        self.input_name, self.extra_inputs = input_name, extra_inputs or {}
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._next, None)
        return None if x is None else {self.input_name: x, **self.extra_inputs}


def quantized_nodes(graph) -> list[str]:
    """The nodes of an exported graph (an ``onnx.ModelProto``, topologically sorted as ONNX
    requires) to run in int8: those of :data:`QUANTIZED_OPS` from which another convolution is
    reached (the network up to its heads), less the first :data:`FLOAT_FIRST_CONVS`
    convolutions. The heads and everything after them (decoding, NMS) are left in float."""
    producer = {out: node for node in graph.graph.node for out in node.output}
    before_conv: set[str] = set()  # names of the nodes from which a convolution is reached
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    stack = list(convs)
    while stack:
        for name in stack.pop().input:
            node = producer.get(name)
            if node is not None and node.name not in before_conv:
                before_conv.add(node.name)
                stack.append(node)
    first = {node.name for node in convs[:FLOAT_FIRST_CONVS]}
    return [node.name for node in graph.graph.node if node.op_type in QUANTIZED_OPS
            and node.name in before_conv and node.name not in first]


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice on the root logger (to pre-process the graph,
    which only matters for graphs not folded as ours are); keep it off the user's screen."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(
    source: str | Path,
    target: str | Path,
    images: CalibrationImages,
    input_hw: tuple[int, int],
    extra_inputs: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``source`` (an fp32 graph exported by :mod:`yolov3.export`) quantised to int8 at
    ``target``, as the module docstring describes, calibrated on ``images`` letterboxed to
    ``input_hw``; ``extra_inputs`` feed the graph's other inputs (an NMS graph's thresholds)
    during calibration."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise YoloError("int8 runs on ONNX Runtime, which is not installed: "
                        "pip install 'yolov3[export]'") from None
    graph = onnx.load(str(source))
    first = graph.graph.input[0]
    batch = first.type.tensor_type.shape.dim[0].dim_value or 1  # 0: a dynamic batch
    feeds = CalibrationFeeds(images, first.name, input_hw, batch, extra_inputs)
    with _quiet_quantizer():
        quantize_static(
            str(source), str(target), feeds, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=quantized_nodes(graph),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibMovingAverage": True},  # the mean of each image's min and max
        )
    log.info("int8 calibration on %d images of %s", feeds.images, images.source)
    return Path(target)
