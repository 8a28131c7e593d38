"""The ``model`` section of a training config: the network, its initial weights and anchors,
and what of it stays as loaded. Checked against its cfg, which is read once, here."""

from __future__ import annotations

from dataclasses import dataclass

from yolov3.errors import ConfigError, raise_problems
from yolov3.model.cfg import Anchors, Section, cfg_anchors, load_cfg, parse_anchors


@dataclass
class ModelConfig:
    """The network and its initial weights. ``anchors``: None keeps the cfg's, ``auto`` fits
    as many to the training boxes, else ``w,h, w,h, ...`` (as many pairs as the cfg has).
    ``freeze``: the first layers that do not learn; ``freeze_bn``: every batch norm keeps its
    loaded statistics (see :meth:`~yolov3.model.YOLOv3.freeze_bn`)."""

    cfg: str
    weights: str | None
    anchors: str | None
    freeze: int
    freeze_bn: bool

    def __post_init__(self) -> None:
        try:
            self._sections = load_cfg(self.cfg)
            if self.anchors not in (None, "auto"):
                expected, given = len(cfg_anchors(self._sections)), len(self.anchor_pairs() or [])
                if given != expected:
                    raise_problems([
                        f"model.anchors: {self.cfg} has {expected} anchors (its [yolo] masks "
                        f"index them): give {expected} w,h pairs or 'auto', got {given}"])
        except ConfigError as exc:
            text = str(exc)
            raise ConfigError(text if text.startswith("model.") else f"model: {text}") from None
        layers = len(self._sections) - 1
        problems = []
        if self.freeze < 0:
            problems.append(f"model.freeze must be >= 0, got {self.freeze}")
        elif self.freeze > layers:
            problems.append(f"model.freeze ({self.freeze}) exceeds the {layers} layers of "
                            f"{self.cfg}")
        if self.freeze_bn and not self.weights:
            problems.append("model.freeze_bn keeps the batch norms' loaded statistics, but "
                            "model.weights is none: give the weights whose statistics to keep, "
                            "or set model.freeze_bn=false")
        raise_problems(problems)

    @property
    def sections(self) -> list[Section]:
        """The cfg's sections, read when this section was made."""
        return self._sections

    def anchor_pairs(self) -> Anchors | None:
        """The anchors set here as (w, h) pairs (None: the cfg's; not for ``auto``)."""
        if self.anchors is None:
            return None
        return parse_anchors(self.anchors, "model.anchors")
