"""The device a command runs on, checked once for every command and the training config."""

from __future__ import annotations

import torch

from yolov3.errors import ConfigError


def parse_device(text: str, what: str = "--device") -> torch.device:
    """``text`` (``cpu``, ``cuda``, ``cuda:N``...) as a device that this machine has; ``what``
    names the option or config key in the error."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"{what} {text} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{what} {text} was asked for but no CUDA GPU is available; "
                              "use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{what} {text}: this machine has {torch.cuda.device_count()} "
                              "CUDA GPUs, numbered from 0")
    return device
