"""The number format inference runs in: ``fp32``, ``bf16`` where the hardware has native
bfloat16 (AVX512_BF16 or AMX on the CPU, a CUDA GPU), ``int8`` (ONNX Runtime's integer kernels,
calibrated on the user's images: :mod:`yolov3.inference.quantize`), and ``auto`` choosing
between fp32 and bf16.

On a CPU without native bfloat16, oneDNN emulates it and ``bf16`` is slower than fp32, so
``auto`` keeps fp32 there. ``auto`` is never int8, which needs calibration images. Decoding
(the boxes) and NMS always run in float32.
"""

from __future__ import annotations

import torch

from yolov3.choices import PRECISIONS
from yolov3.errors import YoloError

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
}
# The CPU features that multiply 8-bit integers natively (torch.cpu.get_capabilities's names).
INT8_DOT_PRODUCTS = ("avx512_vnni", "avx_vnni", "amx_int8")


# The CPU features that compute bfloat16 natively (torch.cpu.get_capabilities's names).
BF16_UNITS = ("avx512_bf16", "amx_bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AVX512_BF16 or AMX (:data:`BF16_UNITS`). oneDNN also runs bf16 on AVX-512 CPUs without
    them, by conversion: about 2x slower than fp32 there (Intel Xeon model 207 with those units
    hidden, 2026-12-07), so that does not count. A PyTorch without
    ``torch.cpu.get_capabilities`` falls back to oneDNN's own check."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    if hasattr(torch.cpu, "get_capabilities"):
        capabilities = torch.cpu.get_capabilities()
        return any(capabilities.get(name) for name in BF16_UNITS)
    return bool(torch.backends.mkldnn.is_available()
                and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_int8() -> list[str]:
    """The int8 dot-product instructions of this CPU (:data:`INT8_DOT_PRODUCTS`: VNNI, AMX),
    empty where it has none (int8 then runs, but with little gain over fp32) or where this
    PyTorch cannot tell."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return [name for name in INT8_DOT_PRODUCTS if capabilities.get(name)]


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision`` as it runs on ``device``: ``auto`` is ``bf16`` where it is native, else
    ``fp16`` on a CUDA GPU and ``fp32`` on the CPU; ``fp16`` needs a CUDA GPU, ``int8`` the
    CPU."""
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
    if precision == "int8" and device.type != "cpu":
        raise YoloError(f"int8 inference runs on the CPU (ONNX Runtime's integer kernels), not "
                        f"on {device}; use --device cpu")
    return precision
