"""The packaged training configs (YAML files beside this module), by name."""

from __future__ import annotations

from pathlib import Path

#: The packaged config that every training config starts from: darknet's COCO recipe, one
#: comment per value, the single place where the default values live.
BASE_PRESET = "yolov3-coco-darknet"

_FOLDER = Path(__file__).parent


def packaged_presets() -> list[str]:
    """The names of the packaged configs (``--config NAME``)."""
    return sorted(p.name.removesuffix(".yaml") for p in _FOLDER.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The packaged config file called ``name`` (without ``.yaml``)."""
    return _FOLDER / f"{name}.yaml"
