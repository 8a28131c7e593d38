"""The settings of a detection run, in one checked value: :class:`DetectOptions`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yolov3.checks import at_least_problem, check_img_size, fraction_problem
from yolov3.choices import (
    BACKENDS,
    CONF_MEANING,
    DETECT_CONF,
    EVAL_CONF,
    IOU_MEANING,
    NMS_IOU,
)
from yolov3.errors import YoloError
from yolov3.inference.precision import PRECISIONS
from yolov3.model.network import YOLOv3

if TYPE_CHECKING:
    from yolov3.inference.quantize import CalibrationImages



@dataclass(frozen=True)
class DetectOptions:
    """How a network detects: darknet's detection protocol and the engine it runs on.

    - ``img_size``: the network input, one side (a square) or (height, width), each a multiple
      of 32 from 32 to 4096; None: the network's own, its cfg's ``[net]`` height x width (a
      checkpoint's is the input its training evaluated at).
    - ``conf``: the score threshold, objectness x class probability, in [0, 1].
    - ``iou``: the IoU above which the per-class NMS drops the weaker box, in [0, 1].
    - ``multi_label``: every class of a box above ``conf`` is a detection (darknet's COCO
      protocol); False keeps only each box's best class.
    - ``max_det``: at most this many detections an image, the best.
    - ``precision``: the number format of the network (:data:`PRECISIONS`; ``auto``: bf16
      where the hardware has it natively, see :mod:`yolov3.inference.precision`).
    - ``backend``: the engine, ``torch`` or ``onnxruntime`` (:data:`BACKENDS`).
    - ``calib``: the images int8 is calibrated on
      (:func:`~yolov3.inference.quantize.calibration_images`): required for ``int8``,
      refused otherwise.

    Every value is checked when the options are made: a :class:`YoloError` names the field and
    says what it takes. The command line refuses the same values (``--img-size``, ``--conf``,
    ``--iou``, ``--max-det``, ``--precision``, ``--backend``, ``--calib``). The defaults are
    ``yolov3 detect``'s, in fp32; :meth:`for_evaluation` gives darknet's evaluation protocol.
    """

    img_size: int | tuple[int, int] | None = None
    conf: float = DETECT_CONF
    iou: float = NMS_IOU
    multi_label: bool = True
    max_det: int = 300
    precision: str = "fp32"
    backend: str = "torch"
    calib: CalibrationImages | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_size", check_img_size(self.img_size, "img_size"))
        for name, meaning in (("conf", CONF_MEANING), ("iou", IOU_MEANING)):
            problem = fraction_problem(getattr(self, name), meaning)
            if problem:
                raise YoloError(f"{name} {problem}")
            object.__setattr__(self, name, float(getattr(self, name)))
        if not isinstance(self.multi_label, bool):
            raise YoloError(f"multi_label must be True or False, got {self.multi_label!r}")
        problem = at_least_problem(self.max_det, 1)
        if problem:
            raise YoloError(f"max_det {problem}")
        object.__setattr__(self, "max_det", int(self.max_det))
        for name, known in (("precision", PRECISIONS), ("backend", BACKENDS)):
            if getattr(self, name) not in known:
                raise YoloError(f"unknown {name} {getattr(self, name)!r} (known: "
                                f"{', '.join(known)})")
        if self.calib is not None and self.precision != "int8":
            raise YoloError(f"calibration images are for int8 inference, not {self.precision}: "
                            "set precision='int8' or leave calib out")
        if self.precision == "int8" and self.calib is None:
            raise YoloError("int8 is calibrated on images like those the model will see (a "
                            "few dozen): give them with --calib DATASET|FOLDER (a dataset as "
                            "--data takes it, or a folder of images; in Python, calib="
                            "calibration_images(...))")

    @classmethod
    def for_evaluation(cls, **changes: object) -> DetectOptions:
        """Darknet's COCO evaluation protocol (``yolov3 val``, training's evaluations): every
        (box, class) above a score of 0.005, per-class NMS at IoU 0.45, in fp32; ``changes``
        set other fields (``img_size=416``) or override these."""
        return cls(**{"conf": EVAL_CONF, **changes})

    def replace(self, **changes: object) -> DetectOptions:
        """These options with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def sized_for(self, model: YOLOv3) -> DetectOptions:
        """These options with ``img_size`` None made ``model``'s own input (its cfg's
        ``[net]`` height x width)."""
        if self.img_size is not None:
            return self
        height, width = model.info.height, model.info.width
        return self.replace(img_size=height if height == width else (height, width))


def check_options(options: object, caller: str) -> DetectOptions:
    """``options`` when it is a :class:`DetectOptions`; else a :class:`YoloError` showing
    ``caller`` (a function or class name) how to pass it: the settings were separate
    arguments before, and ``caller(model, 416)`` would otherwise fail deep inside."""
    if not isinstance(options, DetectOptions):
        raise YoloError(f"{caller} takes its detection settings as one DetectOptions, such as "
                        f"DetectOptions(img_size=416, conf=0.25); got {options!r}")
    return options
