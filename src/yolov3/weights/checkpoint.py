"""Training checkpoints: atomic writes, safe loads, and models rebuilt from them.

A checkpoint is a plain dictionary of tensors, numbers and strings, written with ``torch.save``
through :func:`yolov3.fileio.atomic_write` (a crash mid-write leaves the previous file intact)
and read back with ``torch.load(weights_only=True)``, which never executes code from the file.
It carries the model's cfg text, so a checkpoint alone rebuilds its network.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from yolov3.errors import WeightsError
from yolov3.fileio import atomic_write
from yolov3.model.cfg import format_cfg, parse_cfg_text
from yolov3.model.network import YOLOv3

FORMAT = "yolov3-checkpoint"
_ZIP_MAGIC = b"PK\x03\x04"
VERSION = 1


def is_checkpoint(path: str | Path) -> bool:
    """True for a file written by ``torch.save`` (a zip archive, recognised by its first bytes, so
    that a truncated one is recognised too), False for darknet weights (whose first bytes, read
    as a version number, would be 67324752.134742016)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def save_checkpoint(path: str | Path, model: YOLOv3, names: list[str], **state: Any) -> None:
    """Write the model (its cfg and tensors), its class names and any training ``state``
    (optimiser, iteration, config, RNG states, best metric) atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "cfg": format_cfg(model.sections),
        "names": list(names),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "seen": model.seen,
        **state,
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``): a file that would need to run code,
    that is truncated, or that is not one of ours is a :class:`WeightsError`. ``keys`` are the
    entries the caller needs besides the model (``("config", "optimizer", "state")`` to resume
    training)."""
    path = Path(path)
    try:
        complete = zipfile.is_zipfile(path)
    except zipfile.BadZipFile:  # a damaged directory that is_zipfile does not catch itself
        complete = False
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    if not complete:
        raise WeightsError(f"{path}: not a complete checkpoint (a checkpoint is the zip archive "
                           "that torch.save writes; this file is truncated, damaged or something "
                           "else); use an intact copy")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused to load; it is not a safe yolov3 checkpoint "
                           f"({_first_line(exc)})") from None
    except Exception as exc:  # a damaged archive fails in torch.load in many ways
        raise WeightsError(f"{path}: the checkpoint is damaged ({type(exc).__name__}: "
                           f"{_first_line(exc)}); use an intact copy") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a yolov3 checkpoint (no '{FORMAT}' marker)")
    _check_entries(payload, path, keys)
    return payload


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_entries(payload: dict[str, Any], path: Path, keys: tuple[str, ...]) -> None:
    """The entries every checkpoint has, of the right types, and the ``keys`` asked for."""
    tensors = payload.get("model")
    faults = []
    if not isinstance(payload.get("cfg"), str):
        faults.append("'cfg' (the network's cfg text)")
    if not (isinstance(payload.get("names"), list)
            and all(isinstance(n, str) for n in payload["names"])):
        faults.append("'names' (a list of class names)")
    if not (isinstance(tensors, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in tensors.items())):
        faults.append("'model' (the tensors by name)")
    if not isinstance(payload.get("seen", 0), int):
        faults.append("'seen' (an image count)")
    if faults:
        raise WeightsError(f"{path}: the checkpoint is damaged: it has no valid "
                           f"{', '.join(faults)}")
    missing = [repr(k) for k in keys if k not in payload]
    if missing:
        raise WeightsError(f"{path}: the checkpoint has no {', '.join(missing)}: it holds a model "
                           "without the training state needed here (it can start a new run as "
                           "--weights)")


def model_from_checkpoint(payload: dict[str, Any], source: str | Path = "<checkpoint>") -> YOLOv3:
    """The network a checkpoint describes, with its weights, in eval mode."""
    model = YOLOv3(parse_cfg_text(payload["cfg"], f"{source} (embedded cfg)"))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise WeightsError(f"{source}: the weights do not fit the embedded cfg ({exc})") from None
    if len(payload["names"]) != model.num_classes:
        raise WeightsError(f"{source}: the checkpoint names {len(payload['names'])} classes but "
                           f"its network has {model.num_classes}; it is damaged")
    model.seen = int(payload.get("seen", 0))
    return model.eval()
