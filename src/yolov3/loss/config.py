"""The ``loss`` section of a training config: how the loss is made, which anchors learn a
ground truth, and the ignore threshold of the YOLO layers; darknet's values in its preset."""

from __future__ import annotations

from dataclasses import dataclass

from yolov3.errors import ConfigError, raise_problems
from yolov3.loss.assign import AssignRule
from yolov3.loss.yolo_loss import LossOptions

#: ``loss.ignore_thresh`` value that keeps each ``[yolo]`` layer's own.
CFG_IGNORE = "cfg"


@dataclass
class LossConfig:
    """The :class:`~yolov3.loss.LossOptions` of a run, flat as in the YAML file, and
    ``ignore_thresh``: the IoU with a ground truth above which a prediction gets no
    objectness loss, written into every ``[yolo]`` layer of the trained network (``cfg``
    keeps each layer's own, 0.7 in darknet's cfgs)."""

    box: str
    box_gain: float
    obj_gain: float
    cls_gain: float
    label_smoothing: float
    obj_target: str
    assign: str
    assign_threshold: float
    ignore_thresh: float | str

    def __post_init__(self) -> None:
        problems = []
        try:
            self._options = LossOptions(self.box, self.box_gain, self.obj_gain, self.cls_gain,
                                        self.label_smoothing, self.obj_target,
                                        AssignRule(self.assign, self.assign_threshold))
        except ConfigError as exc:
            problems.append(str(exc))
        ignore = self.ignore_thresh
        if ignore != CFG_IGNORE and (isinstance(ignore, str) or not 0 <= ignore <= 1):
            problems.append(f"loss.ignore_thresh is the IoU with a ground truth above which a "
                            f"prediction gets no objectness loss, in [0, 1], or '{CFG_IGNORE}' "
                            f"(the cfg's [yolo] ignore_thresh); got {ignore!r}")
        raise_problems(problems)

    @property
    def ignore_override(self) -> float | None:
        """The ignore threshold that replaces the cfg's ``[yolo] ignore_thresh`` (None:
        :data:`CFG_IGNORE`, the cfg's own)."""
        return None if self.ignore_thresh == CFG_IGNORE else float(self.ignore_thresh)

    def build(self) -> LossOptions:
        """The loss options of these values (made, and checked, with the section)."""
        return self._options
