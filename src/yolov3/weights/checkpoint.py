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
    """True for a file that :func:`load_checkpoint` reads or names, False for darknet weights:
    a zip archive (what ``torch.save`` writes, recognised by its first bytes so that a truncated
    one is recognised too; also a TorchScript export), or an ONNX model (which load_checkpoint
    names as such). Darknet weights begin with a small version number, which neither can."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == _ZIP_MAGIC or is_onnx(head)


# The first field of an ONNX ModelProto, ir_version (field 1, a varint: tag byte 0x08), and the
# tags of the fields that can follow it (producer_name ... opset_import, metadata_props,
# training_info, functions), in the order protobuf serialises them.
_ONNX_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA}


def is_onnx(head: bytes) -> bool:
    """Whether a file's first bytes are an ONNX model's: ir_version (1 to 127) first, then
    another ModelProto field. A darknet weights file starts with its major version, a 32-bit
    0 (or 1), so its first byte is never 0x08 followed by a non-zero byte and a field tag."""
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_NEXT_TAGS


def _export_kind(head: bytes, names: list[str]) -> str | None:
    """What a model export passed as weights is, from its first bytes and, for a zip archive,
    its entry names (a TorchScript archive has ``*/code/`` and ``*/constants.pkl``; a
    ``torch.save`` checkpoint has neither); None for anything else."""
    inside = [n.split("/")[1:] for n in names]  # the entries below the archive's top folder
    if any(parts[:1] == ["code"] or parts == ["constants.pkl"] for parts in inside):
        return ("a TorchScript export (what `yolov3 export --format torchscript` writes), not "
                "weights: it runs with torch.jit.load")
    if is_onnx(head):
        return ("an ONNX model (what `yolov3 export` writes), not weights: it runs with ONNX "
                "Runtime")
    return None


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
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except Exception:  # truncated, damaged or no zip archive: zipfile fails in many ways
        names = None
    export = _export_kind(head, names or [])
    if export:
        raise WeightsError(f"{path}: {export}; to detect, evaluate or train, pass the checkpoint "
                           "(.pt) or darknet .weights it was exported from")
    if names is None:
        raise WeightsError(f"{path}: not a complete checkpoint (a checkpoint is the zip archive "
                           "that torch.save writes; this file is truncated, damaged or something "
                           "else); use an intact copy")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"{path}: refused to load; it is not a safe yolov3 checkpoint "
                           f"({_torch_reason(exc)})") from None
    except Exception as exc:  # a damaged archive fails in torch.load in many ways
        raise WeightsError(f"{path}: the checkpoint is damaged ({type(exc).__name__}: "
                           f"{_torch_reason(exc)}); use an intact copy") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a yolov3 checkpoint (no '{FORMAT}' marker)")
    _check_entries(payload, path, keys)
    return payload


# Sentences of torch.load's messages that advise loading the file anyway (with
# weights_only=False, or by allowlisting what it holds): never relayed, the file is untrusted.
_UNSAFE_ADVICE = re.compile(r"weights.only|safe_globals|allowlist|trust|can still be loaded|"
                            r"arbitrary code|two options|documentation of torch\.load",
                            re.IGNORECASE)


def _torch_reason(exc: BaseException) -> str:
    """What torch.load's error says is wrong with the file, on one line, without terminal colour
    codes and without its advice to load the file unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    for line in text.splitlines():  # the first line with something besides advice
        kept = [s for s in re.split(r"(?<=[.!?])\s+", line.strip())
                if s and not _UNSAFE_ADVICE.search(s)]
        if kept:
            return " ".join(kept)
    return type(exc).__name__


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
