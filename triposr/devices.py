"""Device and dtype selection for inference."""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX or AVX512-BF16); otherwise bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """An explicit device, or auto: cuda, then mps, then cpu."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """An explicit dtype, or auto: bf16 on CUDA with bf16 support and on CPUs with native bf16, else fp16 on CUDA, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None and dtype != "auto":
        try:
            return DTYPES[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r} (known: fp32, bf16, fp16, auto)") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_cpu_allocator(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed activation memory in the process heap instead of handing it back to the kernel.

    glibc gives every large block back on free, so each forward pass page-faults its activations in
    again (about 1.5 million faults per full-size fp32 forward, 5-10 % of its time). This raises
    glibc's mmap threshold to its maximum (32 MiB) and the trim threshold to 1 GiB for the whole
    process. The memory stays reserved for the next pass; peak use does not grow. A no-op (False)
    where the C library is not glibc or `TRIPOSR_NO_MALLOC_TUNING` is set.
    """
    import ctypes
    import os
    import platform

    if os.environ.get("TRIPOSR_NO_MALLOC_TUNING") or platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
