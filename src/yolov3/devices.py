"""The device a command runs on, checked once for every command and the training config."""

from __future__ import annotations

import os
import platform

import torch

from yolov3.errors import ConfigError

#: The device value that picks the GPU when there is one (see :func:`parse_device`).
AUTO_DEVICE = "auto"


def auto_device() -> torch.device:
    """The device ``auto`` means here: under ``torchrun`` the CUDA device of this process's
    local rank, else ``cuda:0`` when CUDA is available, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def parse_device(text: str, what: str = "--device") -> torch.device:
    """``text`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``...) as a device that this machine has;
    ``what`` names the option or config key in the error."""
    if text == AUTO_DEVICE:
        return auto_device()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{what} {text} is not a device: use auto, cpu, cuda or "
                          "cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {text} was asked for but no CUDA GPU is available; "
                              "use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {text}: this machine has {torch.cuda.device_count()} "
                              "CUDA GPUs, numbered from 0")
    return device


def describe_device(device: torch.device) -> str:
    """``device`` with the name of its hardware: the GPU's, or the CPU's model name."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                name = next((line.split(":", 1)[1].strip() for line in f
                             if line.startswith("model name")), "")
        except OSError:
            name = ""
        name = name or platform.processor()
        return f"cpu ({name}, {os.cpu_count()} cores)" if name else "cpu"
    return str(device)
