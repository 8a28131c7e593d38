"""The training configuration: typed sections read from YAML, with command-line overrides.

Every config starts from the packaged preset ``yolov3-coco-darknet.yaml`` (darknet's COCO recipe,
one comment per value), which is the single place where the default values live. A user's YAML
file then replaces the keys it lists, and ``section.key=value`` overrides replace single values.
Unknown keys and values of the wrong type are errors that name the key and where it came from.

This module only reads, merges and types: each section is a dataclass beside the code that
uses it, which checks its own values when it is made (``__post_init__``) and builds its runtime
object. Adding a setting is a field with its check, its use, and its value in the preset.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolov3.configs import BASE_PRESET, packaged_presets, preset_path
from yolov3.errors import ConfigError
from yolov3.inputs.config import AugmentConfig, MultiscaleConfig
from yolov3.loss.config import LossConfig
from yolov3.model.config import ModelConfig
from yolov3.train.datasets import DataConfig
from yolov3.train.ema import EmaConfig
from yolov3.train.optim import OptimizerConfig, ScheduleConfig
from yolov3.train.run_config import RunConfig

__all__ = ["BASE_PRESET", "TrainConfig", "load_config", "packaged_presets", "preset_path"]


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
    return _build(data, str(base))


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


def _build(data: dict[str, Any], source: str) -> TrainConfig:
    """The config from merged ``data``: each section is made from its keys and checks itself;
    the problems of every section are told together. A missing key is an error of the
    preset ``source``."""
    sections, problems = {}, []
    for f in dataclasses.fields(TrainConfig):
        cls, values = typing.get_type_hints(TrainConfig)[f.name], data.get(f.name, {})
        missing = [k.name for k in dataclasses.fields(cls) if k.init and k.name not in values]
        if missing:
            raise ConfigError(f"{source}: missing key '{f.name}.{missing[0]}'")
        try:
            sections[f.name] = cls(**values)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("config: " + "; ".join(problems))
    return TrainConfig(**sections)
