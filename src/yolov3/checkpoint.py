"""Training checkpoints: atomic writes, safe loads, and models rebuilt from them.

A checkpoint is a plain dictionary of tensors, numbers and strings, written with ``torch.save``
through :func:`yolov3.fileio.atomic_write` (a crash mid-write leaves the previous file intact)
and read back with ``torch.load(weights_only=True)``, which never executes code from the file.
It carries the model's cfg text, so a checkpoint alone rebuilds its network.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from yolov3.errors import WeightsError
from yolov3.fileio import atomic_write
from yolov3.model.cfg import format_cfg, parse_cfg_text
from yolov3.model.darknet import Darknet

FORMAT = "yolov3-checkpoint"
VERSION = 1


def is_checkpoint(path: str | Path) -> bool:
    """True for a file written by ``torch.save`` (a zip archive), False for darknet weights."""
    return zipfile.is_zipfile(path)


def save_checkpoint(path: str | Path, model: Darknet, names: list[str], **state: Any) -> None:
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


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``): a file that would need to run code,
    or that is not one of ours, is a :class:`WeightsError`."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{path}: refused to load; it is not a safe yolov3 checkpoint ({first})"
        ) from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a yolov3 checkpoint (no '{FORMAT}' marker)")
    return payload


def model_from_checkpoint(payload: dict[str, Any], source: str | Path = "<checkpoint>") -> Darknet:
    """The network a checkpoint describes, with its weights, in eval mode."""
    model = Darknet(parse_cfg_text(payload["cfg"], f"{source} (embedded cfg)"))
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise WeightsError(f"{source}: the weights do not fit the embedded cfg ({exc})") from None
    model.seen = int(payload.get("seen", 0))
    return model.eval()
