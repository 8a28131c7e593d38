"""The number format inference runs in: ``fp32``, ``bf16`` where the hardware has native
bfloat16 (AVX512_BF16 or AMX on the CPU, a CUDA GPU), and ``auto`` choosing between them.

On a CPU without native bfloat16, oneDNN emulates it and ``bf16`` is slower than fp32, so
``auto`` keeps fp32 there. Decoding (the boxes) always runs in float32.
"""

from __future__ import annotations

import torch

from yolov3.errors import YoloError

PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
}


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512_BF16 or AMX (as oneDNN sees it)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision`` as it runs on ``device``: ``auto`` is ``bf16`` where it is native, else
    ``fp16`` on a CUDA GPU and ``fp32`` on the CPU; ``fp16`` needs a CUDA GPU."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise YoloError(f"unknown precision '{precision}' (known: {', '.join(PRECISIONS)})")
    if precision == "auto":
        if native_bf16(device):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise YoloError("fp16 inference needs a CUDA GPU (the CPU has no fast float16); "
                        "use --precision bf16 or fp32")
    return precision
