"""The training configuration: typed sections read from YAML, with command-line overrides.

Every config starts from the packaged preset ``yolov3-coco-darknet.yaml`` (darknet's COCO recipe,
one comment per value), which is the single place where the default values live. A user's YAML
file then replaces the keys it lists, and ``section.key=value`` overrides replace single values.
Unknown keys and values of the wrong type are errors that name the key and where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from yolov3.devices import parse_device
from yolov3.errors import ConfigError
from yolov3.inputs.augment import RandomBoxOrder, TrainTransform
from yolov3.inputs.loader import MultiScale, input_shape
from yolov3.inputs.mix import Mix
from yolov3.loss import ASSIGN_RULES, BOX_LOSSES, OBJ_TARGETS, AssignRule, LossOptions
from yolov3.model.cfg import (
    MAX_IMG_SIZE,
    STRIDE,
    Anchors,
    cfg_anchors,
    load_cfg,
    parse_anchors,
)
from yolov3.train.loggers import check_loggers

#: Mixed-precision modes of ``train.amp`` and the autocast dtype of each.
AMP_DTYPES = {"off": None, "bf16": "bfloat16", "fp16": "float16"}
#: ``train.amp`` values: a mode of :data:`AMP_DTYPES`, or ``auto`` (bf16 where the device has
#: native bfloat16, fp16 on other CUDA GPUs, off elsewhere: see :func:`amp_mode`).
AMP_MODES = (*AMP_DTYPES, "auto")

#: ``optimizer.name`` values.
OPTIMIZERS = ("sgd", "adamw")
#: ``schedule.policy`` values.
LR_POLICIES = ("steps", "cosine", "onecycle")

#: The packaged config that every training config starts from.
BASE_PRESET = "yolov3-coco-darknet"


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

    def anchor_pairs(self) -> Anchors | None:
        """The anchors set here as (w, h) pairs (None: the cfg's; not for ``auto``)."""
        if self.anchors is None:
            return None
        return parse_anchors(self.anchors, "model.anchors")


#: ``loss.ignore_thresh`` value that keeps each ``[yolo]`` layer's own (see :class:`LossConfig`).
CFG_IGNORE = "cfg"
#: ``data.aspect`` value that measures the training images (see :class:`DataConfig`).
AUTO_ASPECT = "auto"
# The most elongated network input data.aspect sets (width / height, or its inverse).
_MAX_ASPECT = 4.0


@dataclass
class DataConfig:
    """The dataset and what the data pipeline keeps of it. ``aspect``: the network input's
    width / height, for training and evaluation (1: darknet's square; else ``img_size`` and
    each multi-scale size are the longer side, see :func:`~yolov3.inputs.loader.input_shape`);
    ``auto`` measures the training images (the median of their width / height) and records it
    in the config when the run starts."""

    dataset: str | None
    img_size: int
    aspect: float | str
    max_labels: int

    @property
    def input_hw(self) -> tuple[int, int]:
        """(height, width) of the evaluation input (``aspect`` measured already)."""
        if self.aspect == AUTO_ASPECT:
            raise ValueError("data.aspect 'auto' is measured when training starts")
        return input_shape(self.img_size, float(self.aspect))


@dataclass
class OptimizerConfig:
    """Darknet's SGD (``name: sgd``): per-image ``lr`` and ``decay``, ``batch`` images per
    optimiser step, taken as ``subdivisions`` accumulated forward/backward passes; with
    ``nesterov``, Nesterov's momentum. ``name: adamw``: AdamW with step size ``lr`` (Adam does
    not depend on the loss's scale), betas (``momentum``, 0.999) and decoupled weight decay
    ``decay`` (see :mod:`yolov3.train.optim`)."""

    name: str
    lr: float
    momentum: float
    nesterov: bool
    decay: float
    batch: int
    subdivisions: int

    @property
    def minibatch(self) -> int:
        """Images per forward/backward pass: darknet's ``batch / subdivisions``."""
        return self.batch // self.subdivisions


@dataclass
class ScheduleConfig:
    """The learning-rate factor of each iteration: a polynomial burn-in (warm-up), then
    darknet's ``steps`` policy, or a cosine or one-cycle decay to ``final_lr`` at ``max_iter``
    (see :func:`yolov3.train.optim.lr_factor`)."""

    policy: str
    burn_in: int
    burn_in_power: float
    steps: list[int]
    scales: list[float]
    final_lr: float
    max_iter: int


@dataclass
class AugmentConfig:
    """Darknet's training augmentation (see :class:`~yolov3.inputs.augment.TrainTransform`),
    with the random ``scale`` and the ``mosaic`` and ``mixup`` of the improved recipes
    (:mod:`yolov3.inputs.mix`), off at 0."""

    jitter: float
    random_placing: bool
    hue: float
    saturation: float
    exposure: float
    flip: float
    scale: float
    mosaic: float
    mixup: float

    def build(self, max_labels: int) -> RandomBoxOrder:
        """The transform that applies this augmentation, keeping ``max_labels`` boxes (a random
        ``max_labels`` of an image that has more, as darknet's ``randomize_boxes``)."""
        return RandomBoxOrder(TrainTransform(self.jitter, self.random_placing, self.hue,
                                             self.saturation, self.exposure, self.flip,
                                             max_labels, scale=self.scale))

    def build_mix(self) -> Mix | None:
        """The mosaic and mixup of the training stream (None when both are off)."""
        if not (self.mosaic or self.mixup):
            return None
        return Mix(mosaic=self.mosaic, mixup=self.mixup)


@dataclass
class LossConfig:
    """How the loss is made and which anchors learn a GT (see
    :class:`~yolov3.loss.LossOptions`), and the ignore threshold of the YOLO layers
    (``ignore_thresh``: ``cfg`` keeps the cfg's); darknet's values in its preset."""

    box: str
    box_gain: float
    obj_gain: float
    cls_gain: float
    label_smoothing: float
    obj_target: str
    assign: str
    assign_threshold: float
    ignore_thresh: float | str

    @property
    def ignore_override(self) -> float | None:
        """The ignore threshold that replaces the cfg's ``[yolo] ignore_thresh`` (None:
        :data:`CFG_IGNORE`, the cfg's own)."""
        return None if self.ignore_thresh == CFG_IGNORE else float(self.ignore_thresh)

    def build(self) -> LossOptions:
        """The loss options of these values."""
        return LossOptions(self.box, self.box_gain, self.obj_gain, self.cls_gain,
                           self.label_smoothing, self.obj_target,
                           AssignRule(self.assign, self.assign_threshold))


@dataclass
class EmaConfig:
    """The moving average of the weights (:mod:`yolov3.train.ema`); ``decay`` 0 keeps none."""

    decay: float
    ramp: float


@dataclass
class MultiscaleConfig:
    """Darknet's random input resizing during training; ``interval`` 0 keeps one size."""

    interval: int
    min_size: int
    max_size: int
    step: int

    def build(self, img_size: int, aspect: float = 1.0) -> MultiScale:
        """The input sizes of training: these, or ``img_size`` alone when ``interval`` is 0,
        of width / height ``aspect``."""
        if self.interval == 0:
            return MultiScale(img_size, img_size, 1, STRIDE, aspect)
        return MultiScale(self.min_size, self.max_size, self.interval, self.step, aspect)


@dataclass
class RunConfig:
    """How the trainer runs: where, with what seed, and how often it evaluates and saves."""

    device: str
    seed: int
    workers: int
    eval_interval: int
    checkpoint_interval: int
    log_interval: int
    loggers: list[str]
    max_nonfinite: int
    time_limit: float
    amp: str
    channels_last: bool
    compile: bool
    sync_bn: bool
    cudnn_benchmark: bool


@dataclass
class TrainConfig:
    """A whole training configuration, one attribute per YAML section."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    augment: AugmentConfig
    multiscale: MultiscaleConfig
    loss: LossConfig
    ema: EmaConfig
    train: RunConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists, as in the YAML file (for checkpoints and logs)."""
        return dataclasses.asdict(self)


def packaged_presets() -> list[str]:
    """The names of the packaged configs (``--config NAME``)."""
    return sorted(p.name.removesuffix(".yaml") for p in
                  Path(str(resources.files("yolov3") / "configs")).glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The packaged config file called ``name`` (without ``.yaml``)."""
    return Path(str(resources.files("yolov3") / "configs" / f"{name}.yaml"))


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    saved: tuple[Mapping[str, Any], str] | None = None,
) -> TrainConfig:
    """The preset, updated by the YAML file ``path`` (a file, or the name of a packaged config)
    and then by ``overrides`` such as ``optimizer.lr=0.002`` or ``schedule.steps=[1000,2000]``
    (values are read as YAML). ``saved`` is a config stored in a checkpoint, with the name of
    its file, which replaces the preset (a resumed run): ``path`` and ``overrides`` then change
    the saved values, in that order."""
    data: dict[str, Any] = {}
    base = preset_path(BASE_PRESET)
    _merge(data, _read_yaml(base), TrainConfig, str(base))
    if saved is not None:
        _merge(data, saved[0], TrainConfig, saved[1])
    if path is not None:
        file = Path(path)
        if not file.is_file() and preset_path(str(path)).is_file():
            file = preset_path(str(path))
        _merge(data, _read_yaml(file), TrainConfig, str(file))
    for item in overrides:
        _merge(data, _parse_override(item), TrainConfig, f"override '{item}'")
    config = _build(TrainConfig, data, str(base), "")
    _validate(config)
    return config


class _Loader(yaml.SafeLoader):
    """YAML as the config means it: ``true`` and ``false`` are booleans, while YAML 1.1's other
    spellings (``on``, ``off``, ``yes``, ``no``) stay text, so that ``train.amp: off`` is the
    mode ``off``; a boolean setting takes those words too (see :func:`_coerce`)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
# Words a boolean setting accepts besides true and false.
_BOOL_WORDS = {"on": True, "yes": True, "y": True, "off": False, "no": False, "n": False}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save the config as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return data


def _parse_override(item: str) -> dict[str, Any]:
    """``a.b=value`` -> ``{"a": {"b": value}}`` with the value read as YAML."""
    key, sep, text = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override '{item}': expected section.key=value")
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': the value is not valid YAML ({exc})") from None
    for part in reversed(parts):
        value = {part: value}
    return value


def _merge(
    into: dict[str, Any], new: Mapping[str, Any], schema: type, source: str, prefix: str = ""
) -> None:
    """Copy ``new`` into ``into`` key by key, checking names and types against ``schema``."""
    hints = typing.get_type_hints(schema)
    for key, value in new.items():
        name = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(prefix + k for k in hints)
            raise ConfigError(f"{source}: unknown key '{name}' (known: {known})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' is a section; set its keys, as {name}.KEY")
            _merge(into.setdefault(key, {}), value, hint, source, f"{name}.")
        else:
            into[key] = _coerce(value, hint, name, source)


def _coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    """``value`` as type ``hint`` (int, float, bool, str, ``X | None``, ``list[X]``)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        *first, last = [a for a in args if a is not type(None)]
        for option in first:  # the first type the value reads as
            try:
                return _coerce(value, option, name, source)
            except ConfigError:
                pass
        return _coerce(value, last, name, source)
    if typing.get_origin(hint) is list:
        if isinstance(value, list):
            return [_coerce(v, args[0], name, source) for v in value]
    elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif hint is float and isinstance(value, str) and _is_number(value):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    elif hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    elif hint is bool and isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    elif isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{source}: '{name}' must be {expected}, got {value!r}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _build(cls: type, data: dict[str, Any], source: str, prefix: str) -> Any:
    """The dataclass ``cls`` from merged ``data``; a missing key is an error of the preset."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            raise ConfigError(f"{source}: missing key '{prefix}{f.name}'")
        hint = typing.get_type_hints(cls)[f.name]
        value = data[f.name]
        if dataclasses.is_dataclass(hint):
            value = _build(hint, value, source, f"{prefix}{f.name}.")
        values[f.name] = value
    return cls(**values)


def _validate(config: TrainConfig) -> None:
    """Relations between values that the types alone do not ensure."""
    opt, sched, ms = config.optimizer, config.schedule, config.multiscale
    problems = []
    if opt.batch < 1 or opt.subdivisions < 1 or opt.batch % opt.subdivisions:
        problems.append(
            f"optimizer.batch ({opt.batch}) must be a positive multiple of "
            f"optimizer.subdivisions ({opt.subdivisions})"
        )
    if len(sched.steps) != len(sched.scales):
        problems.append(
            f"schedule.steps has {len(sched.steps)} values and schedule.scales "
            f"{len(sched.scales)}; give one scale per step"
        )
    run = config.train
    at_least = {
        "model.freeze": (config.model.freeze, 0),
        "data.max_labels": (config.data.max_labels, 1),
        "schedule.burn_in": (sched.burn_in, 0),
        "schedule.max_iter": (sched.max_iter, 1),
        "multiscale.interval": (ms.interval, 0),
        "train.seed": (run.seed, 0),
        "train.workers": (run.workers, 0),
        "train.eval_interval": (run.eval_interval, 0),
        "train.checkpoint_interval": (run.checkpoint_interval, 0),
        "train.log_interval": (run.log_interval, 1),
        "train.max_nonfinite": (run.max_nonfinite, 1),
    }
    for name, (value, low) in at_least.items():
        if value < low:
            problems.append(f"{name} must be >= {low}, got {value}")
    if run.seed >= 2**63:
        problems.append(f"train.seed must be < 2**63, got {run.seed}")
    if not (math.isfinite(opt.lr) and opt.lr > 0):
        problems.append(f"optimizer.lr must be a number > 0, got {opt.lr}")
    if not 0 <= opt.momentum < 1:
        problems.append(f"optimizer.momentum must be >= 0 and < 1, got {opt.momentum}")
    if not (math.isfinite(opt.decay) and opt.decay >= 0):
        problems.append(f"optimizer.decay must be a number >= 0, got {opt.decay}")
    aug = config.augment
    if not 0 <= aug.jitter < 1:
        problems.append(f"augment.jitter must be in [0, 1), got {aug.jitter}")
    if not 0 <= aug.hue <= 0.5:
        problems.append(f"augment.hue must be in [0, 0.5], got {aug.hue}")
    for name, factor in (("saturation", aug.saturation), ("exposure", aug.exposure)):
        if not (math.isfinite(factor) and factor >= 1):
            problems.append(f"augment.{name} is a factor >= 1 (1 = off), got {factor}")
    if not 0 <= aug.flip <= 1:
        problems.append(f"augment.flip is a probability in [0, 1], got {aug.flip}")
    for name, value in (("augment.scale", aug.scale),):
        if not 0 <= value < 1:
            problems.append(f"{name} must be in [0, 1), got {value}")
    for name, value in (("augment.mosaic", aug.mosaic), ("augment.mixup", aug.mixup)):
        if not 0 <= value <= 1:
            problems.append(f"{name} is a probability in [0, 1], got {value}")
    problems += _choice("optimizer.name", opt.name, OPTIMIZERS)
    problems += _choice("schedule.policy", sched.policy, LR_POLICIES)
    if not 0 <= sched.final_lr <= 1:
        problems.append(f"schedule.final_lr is a factor of optimizer.lr in [0, 1], "
                        f"got {sched.final_lr}")
    loss = config.loss
    problems += _choice("loss.box", loss.box, BOX_LOSSES)
    problems += _choice("loss.obj_target", loss.obj_target, OBJ_TARGETS)
    problems += _choice("loss.assign", loss.assign, ASSIGN_RULES)
    for name, gain in (("box_gain", loss.box_gain), ("obj_gain", loss.obj_gain),
                       ("cls_gain", loss.cls_gain)):
        if not (math.isfinite(gain) and gain > 0):
            problems.append(f"loss.{name} must be a number > 0, got {gain}")
    if not 0 <= loss.label_smoothing < 1:
        problems.append(f"loss.label_smoothing must be in [0, 1), got {loss.label_smoothing}")
    if loss.assign == "iou" and not 0 < loss.assign_threshold < 1:
        problems.append("loss.assign_threshold is the shape IoU above which an anchor learns "
                        f"a GT with loss.assign: iou, in (0, 1); got {loss.assign_threshold}")
    ignore = loss.ignore_thresh
    if ignore != CFG_IGNORE and (isinstance(ignore, str) or not 0 <= ignore <= 1):
        problems.append(f"loss.ignore_thresh is the IoU with a ground truth above which a "
                        f"prediction gets no objectness loss, in [0, 1], or '{CFG_IGNORE}' (the "
                        f"cfg's [yolo] ignore_thresh); got {ignore!r}")
    if loss.assign == "ratio" and not loss.assign_threshold > 1:
        problems.append("loss.assign_threshold is the largest width or height ratio of an "
                        f"anchor to a GT with loss.assign: ratio, > 1; got "
                        f"{loss.assign_threshold}")
    ema = config.ema
    if not 0 <= ema.decay < 1:
        problems.append(f"ema.decay must be in [0, 1) (0: no average), got {ema.decay}")
    if not (math.isfinite(ema.ramp) and ema.ramp > 0):
        problems.append(f"ema.ramp must be a number of iterations > 0, got {ema.ramp}")
    if not (math.isfinite(run.time_limit) and run.time_limit >= 0):
        problems.append(f"train.time_limit must be a number of seconds >= 0 (0: none), "
                        f"got {run.time_limit}")
    try:
        parse_device(run.device, "train.device")
    except ConfigError as exc:
        problems.append(str(exc))
    sizes = {
        "data.img_size": config.data.img_size,
        "multiscale.min_size": ms.min_size,
        "multiscale.max_size": ms.max_size,
        "multiscale.step": ms.step,
    }
    for name, size in sizes.items():
        if size < STRIDE or size % STRIDE:
            problems.append(f"{name} must be a positive multiple of {STRIDE}, got {size}")
        elif name != "multiscale.step" and size > MAX_IMG_SIZE:
            problems.append(f"{name} must be at most {MAX_IMG_SIZE} (memory grows with the "
                            f"square of the side), got {size}")
    aspect = config.data.aspect
    if aspect != AUTO_ASPECT and (isinstance(aspect, str) or not (
            math.isfinite(aspect) and 1 / _MAX_ASPECT <= aspect <= _MAX_ASPECT)):
        problems.append(f"data.aspect is the network input's width / height, a number from "
                        f"{1 / _MAX_ASPECT:g} to {_MAX_ASPECT:g} (1: square) or "
                        f"'{AUTO_ASPECT}', got {aspect!r}")
    problems += _choice("train.amp", config.train.amp, AMP_MODES)
    problems += check_loggers(run.loggers)
    if ms.min_size > ms.max_size:
        problems.append("multiscale.min_size must not exceed multiscale.max_size")
    problems += _model_problems(config.model)
    if problems:
        raise ConfigError("config: " + "; ".join(problems))


def _choice(name: str, value: str, known: tuple[str, ...]) -> list[str]:
    """A problem when ``value`` is not one of ``known``."""
    return [] if value in known else [f"{name} must be one of {', '.join(known)}, "
                                      f"got '{value}'"]


def _model_problems(model: ModelConfig) -> list[str]:
    """What in ``model`` does not fit its cfg (which is read, not built) or its weights: the
    anchors, the frozen layers, frozen batch-norm statistics without weights to keep."""
    try:
        sections = load_cfg(model.cfg)
        if model.anchors not in (None, "auto"):
            expected, given = len(cfg_anchors(sections)), len(model.anchor_pairs() or [])
            if given != expected:
                return [f"model.anchors: {model.cfg} has {expected} anchors (its [yolo] masks "
                        f"index them): give {expected} w,h pairs or 'auto', got {given}"]
    except ConfigError as exc:
        return [f"model: {exc}"]
    layers = len(sections) - 1
    if model.freeze > layers:
        return [f"model.freeze ({model.freeze}) exceeds the {layers} layers of {model.cfg}"]
    if model.freeze_bn and not model.weights:
        return ["model.freeze_bn keeps the batch norms' loaded statistics, but model.weights is "
                "none: give the weights whose statistics to keep, or set model.freeze_bn=false"]
    return []


def amp_mode(amp: str, device: str) -> str:
    """The mixed-precision mode ``train.amp`` runs as on ``device``: ``auto`` is bf16 where
    bfloat16 is native (AVX512_BF16 or AMX on the CPU, CUDA), fp16 on a CUDA GPU without it,
    off elsewhere; any other value as it is."""
    if amp != "auto":
        return amp
    from yolov3.inference.precision import resolve_precision  # torch, only when needed

    return {"fp32": "off"}.get(chosen := resolve_precision("auto", device), chosen)
