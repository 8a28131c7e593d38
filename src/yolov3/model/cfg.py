"""Darknet ``.cfg`` files: parsing, validation and the built-in architectures.

A cfg is a list of sections such as ``[convolutional]`` with ``key=value`` lines. The first
section is ``[net]`` (input size and the training hyper-parameters); every other section is one
layer, numbered from 0 in file order, which is how ``route`` and ``shortcut`` refer to layers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from yolov3.errors import ConfigError

#: Architectures that ship with the package, built without any file argument.
BUILTIN_CFGS = ("yolov3", "yolov3-spp", "yolov3-tiny")
#: The network of a command given neither ``--model`` nor ``--weights``.
DEFAULT_MODEL = "yolov3"

#: The networks' total stride, the largest of their YOLO layers: every input side (training,
#: detection, export) must be a multiple of it.
STRIDE = 32
#: The largest input side accepted: the network's memory and time grow with the square of the
#: side (a 32-channel float map at 4096x4096 is 2 GB already); darknet trains at 320 to 608.
MAX_IMG_SIZE = 4096

#: Anchor boxes: (width, height) pairs in pixels of the network input.
Anchors = list[tuple[float, float]]


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """A network input size as (height, width): one side (a square input) or the pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)

# [net] keys that darknet's own trainer reads (its training recipe). This implementation takes
# the recipe from the training config instead (the preset and its overrides), so these keys are
# accepted, for darknet's cfg files, and reported as not read: see :func:`unread_training_keys`.
_NET_TRAINING_KEYS = (
    "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue",
    "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales", "max_crop",
    "min_crop", "flip", "mosaic", "letter_box",
)
# [yolo] keys of darknet's trainer that the training config replaces (augment.jitter,
# multiscale); ignore_thresh is read, as a property of the YOLO layer.
_YOLO_TRAINING_KEYS = ("jitter", "random", "truth_thresh")

# Keys each section may hold. Darknet ignores unknown keys silently, which hides typos such as
# ``filter=255``; here an unknown key is an error that names the file and line.
_LAYER_KEYS: dict[str, set[str]] = {
    "convolutional": {"batch_normalize", "filters", "size", "stride", "pad", "padding",
                      "activation"},
    "shortcut": {"from", "activation"},
    "route": {"layers"},
    "upsample": {"stride"},
    "maxpool": {"size", "stride", "padding"},
    "yolo": {"mask", "anchors", "classes", "num", "jitter", "ignore_thresh", "truth_thresh",
             "random"},
}
_NET_KEYS = {"width", "height", "channels", *_NET_TRAINING_KEYS}
_SECTION_NAMES = {"net", "network", *_LAYER_KEYS}


@dataclass
class Section:
    """One ``[type]`` block of a cfg: its options as raw strings and where it was written."""

    type: str
    options: dict[str, str] = field(default_factory=dict)
    source: str = "<cfg>"
    line: int = 0

    def where(self, key: str | None = None) -> str:
        what = f"[{self.type}]" + (f" key '{key}'" if key else "")
        return f"{self.source}, line {self.line}, {what}"

    def get_int(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        """The integer ``key`` (``default`` when absent; required without one), which must be
        at least ``minimum`` when that is given."""
        value = int(self._get(key, default, int))
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.where(key)}: must be at least {minimum}, got {value}")
        return value

    def get_float(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, default, float))

    def get_str(self, key: str, default: str | None = None) -> str:
        if key in self.options:
            return self.options[key]
        if default is None:
            raise ConfigError(f"{self.where(key)}: required key is missing")
        return default

    def get_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        if key not in self.options:
            if default is None:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return list(default)
        return [int(v) for v in self._split(key, int)]

    def get_floats(self, key: str) -> list[float]:
        return [float(v) for v in self._split(key, float)]

    def _split(self, key: str, kind: type) -> list:
        if key not in self.options:
            raise ConfigError(f"{self.where(key)}: required key is missing")
        raw = self.options[key]
        try:
            return [kind(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(
                f"{self.where(key)}: expected a comma-separated list of "
                f"{kind.__name__}s, got '{raw}'"
            ) from None

    def _get(self, key: str, default: float | None, kind: type) -> float:
        if key not in self.options:
            if default is None:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default
        raw = self.options[key]
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(
                f"{self.where(key)}: expected {kind.__name__}, got '{raw}'"
            ) from None


def parse_cfg_text(text: str, source: str = "<cfg>") -> list[Section]:
    """Parse cfg text into sections; the first must be ``[net]``."""
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{source}, line {lineno}: unclosed section header '{line}'")
            name = line[1:-1].strip().lower()
            if name not in _SECTION_NAMES:
                known = ", ".join(sorted(_SECTION_NAMES - {"network"}))
                raise ConfigError(
                    f"{source}, line {lineno}: unknown section [{name}] "
                    f"(this implementation supports: {known})"
                )
            sections.append(Section("net" if name == "network" else name, {}, source, lineno))
            continue
        if "=" not in line:
            raise ConfigError(f"{source}, line {lineno}: expected 'key=value', got '{line}'")
        if not sections:
            raise ConfigError(f"{source}, line {lineno}: option before the first [section]")
        key, value = (s.strip() for s in line.split("=", 1))
        section = sections[-1]
        allowed = _NET_KEYS if section.type == "net" else _LAYER_KEYS[section.type]
        if key not in allowed:
            raise ConfigError(
                f"{source}, line {lineno}: unknown key '{key}' in [{section.type}] "
                f"(known keys: {', '.join(sorted(allowed))})"
            )
        section.options[key] = value
    if not sections or sections[0].type != "net":
        raise ConfigError(f"{source}: a darknet cfg must start with a [net] section")
    if len(sections) == 1:
        raise ConfigError(f"{source}: the cfg defines no layers after [net]")
    return sections


def builtin_cfg_path(name: str) -> Path:
    """The packaged cfg file of a named architecture (``yolov3``, ``yolov3-spp``, ...)."""
    return Path(str(resources.files("yolov3") / "cfgs" / f"{name}.cfg"))


def load_cfg(cfg: str | Path) -> list[Section]:
    """Read a cfg given as a built-in architecture name or as a file path."""
    if isinstance(cfg, str) and cfg in BUILTIN_CFGS:
        path = builtin_cfg_path(cfg)
    else:
        path = Path(cfg)
        if not path.is_file():
            raise ConfigError(
                f"'{cfg}' is neither a built-in architecture ({', '.join(BUILTIN_CFGS)}) "
                "nor an existing .cfg file"
            )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the cfg ({exc})") from None
    return parse_cfg_text(text, str(path))


def override_head(
    sections: list[Section],
    num_classes: int | None = None,
    anchors: list[tuple[float, float]] | None = None,
    ignore_thresh: float | None = None,
) -> list[Section]:
    """A copy of ``sections`` with another number of classes, another anchor set and/or
    another ignore threshold.

    Each ``[yolo]`` gets the new ``classes``/``anchors`` (and ``num``) and ``ignore_thresh``,
    and the convolution just before it gets ``filters = len(mask) * (5 + classes)``, as darknet
    requires.
    """
    out = copy.deepcopy(sections)
    for i, sec in enumerate(out):
        if sec.type != "yolo":
            continue
        if ignore_thresh is not None:
            sec.options["ignore_thresh"] = f"{ignore_thresh:g}"
        if anchors is not None:
            sec.options["anchors"] = format_anchors(anchors)
            sec.options["num"] = str(len(anchors))
        if num_classes is not None:
            sec.options["classes"] = str(num_classes)
        head = out[i - 1]
        if head.type != "convolutional":
            raise ConfigError(f"{sec.where()}: a [yolo] layer must follow a [convolutional]")
        n_mask = len(sec.get_ints("mask", list(range(sec.get_int("num", 1)))))
        head.options["filters"] = str(n_mask * (5 + sec.get_int("classes")))
    return out


def with_input_size(sections: list[Section], input_hw: tuple[int, int]) -> list[Section]:
    """A copy of ``sections`` whose ``[net]`` ``width`` and ``height`` are ``input_hw``
    (height, width): the input the network detects at, as darknet reads it for
    ``detector test``."""
    out = copy.deepcopy(sections)
    out[0].options["height"], out[0].options["width"] = (str(v) for v in input_hw)
    return out


def format_cfg(sections: list[Section]) -> str:
    """Write sections back as cfg text (used to save a cfg beside a trained run)."""
    parts = []
    for sec in sections:
        body = "\n".join(f"{k}={v}" for k, v in sec.options.items())
        parts.append(f"[{sec.type}]\n{body}\n")
    return "\n".join(parts)


def resolve_layer(index: int, current: int, section: Section, key: str) -> int:
    """Darknet layer references: negative is relative to the current layer, else absolute."""
    absolute = current + index if index < 0 else index
    if not 0 <= absolute < current:
        raise ConfigError(
            f"{section.where(key)}: refers to layer {index}, which resolves to {absolute}; "
            f"only earlier layers 0..{current - 1} can be used"
        )
    return absolute


def layer_strides(sections: Sequence[Section]) -> list[float]:
    """Input pixels per output pixel of each layer (``sections[1:]``): convolutions and
    max-pools multiply by their stride (1 by default), upsamplings divide, a route takes its
    first source's."""
    strides: list[float] = []
    for i, sec in enumerate(sections[1:]):
        before = strides[-1] if strides else 1.0
        if sec.type in ("convolutional", "maxpool"):
            strides.append(before * sec.get_int("stride", 1, minimum=1))
        elif sec.type == "upsample":
            strides.append(before / sec.get_int("stride", 2, minimum=1))
        elif sec.type == "route":
            strides.append(strides[resolve_layer(sec.get_ints("layers")[0], i, sec, "layers")])
        else:
            strides.append(before)
    return strides


def parse_anchors(text: str, where: str) -> Anchors:
    """Anchors written as darknet does, ``w,h, w,h, ...``: an even count of finite positive
    numbers. ``where`` names the source in the error (a cfg line, a config key)."""
    try:
        flat = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{where}: expected anchors as 'w,h, w,h, ...', got '{text}'") from None
    if not flat or len(flat) % 2:
        raise ConfigError(f"{where}: anchors are (width, height) pairs: an even count of "
                          f"numbers, got {len(flat)} in '{text}'")
    if not all(math.isfinite(v) and v > 0 for v in flat):
        raise ConfigError(f"{where}: anchor widths and heights must be positive pixels, "
                          f"got '{text}'")
    return list(zip(flat[0::2], flat[1::2], strict=True))


def format_anchors(anchors: Sequence[tuple[float, float]]) -> str:
    """Anchors in darknet's cfg syntax: ``10,13,  16,30,  ...``."""
    return ",  ".join(f"{w:g},{h:g}" for w, h in anchors)


def cfg_anchors(sections: Sequence[Section]) -> Anchors:
    """All K anchors of a parsed cfg (those of its first ``[yolo]`` section, which the
    ``mask`` of every ``[yolo]`` indexes)."""
    yolo = next((s for s in sections if s.type == "yolo"), None)
    if yolo is None:
        raise ConfigError(f"{sections[0].source}: the cfg has no [yolo] layer")
    return parse_anchors(yolo.get_str("anchors"), yolo.where("anchors"))


def unread_training_keys(sections: Sequence[Section]) -> list[str]:
    """The keys of darknet's training recipe that a cfg sets and this implementation does not
    read: the recipe comes from the training config (``yolov3-coco-darknet`` and its
    overrides), which holds darknet's values. ``[yolo] ignore_thresh`` is read from the cfg."""
    found = [f"[net] {k}" for k in _NET_TRAINING_KEYS if k in sections[0].options]
    for key in _YOLO_TRAINING_KEYS:
        if any(key in s.options for s in sections if s.type == "yolo"):
            found.append(f"[yolo] {key}")
    return found
