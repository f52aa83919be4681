"""Devices and precision: which torch device a name means, and when bf16 autocast pays.

Shared by training, loading trained runs, evaluation and benchmarks; the one place that knows
which CPUs multiply bf16 natively, and how a process keeps the memory it frees on a CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from pathlib import Path

import torch

from permakey.errors import UserError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``name`` in ("auto", "cpu", "cuda", "cuda:N", "mps").

    "cuda" picks GPU ``local_rank`` (modulo the GPUs present); "cuda:N" names one, so a
    resolved device's string resolves to itself.

    Raises:
        UserError: the device is not available here.
    """
    given, index = name, None
    if name.startswith("cuda:") and name[len("cuda:") :].isdigit():
        name, index = "cuda", int(name[len("cuda:") :])
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {given}: no CUDA device is available")
        count = torch.cuda.device_count()
        if index is not None and index >= count:
            raise UserError(f"--device cuda:{index}: this machine has {count} CUDA device(s)")
        return torch.device("cuda", local_rank % count if index is None else index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: MPS is not available")
    if name not in ("cpu", "mps"):
        raise UserError(f"unknown device {name!r}")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); True where unknown.

    Without it (e.g. AVX2-only CPUs) bf16 autocast is emulated and far slower than float32:
    measured 1 GFLOP/s against 73 in float32 on an AVX2 AMD EPYC core.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_bf16" in text or "amx_bf16" in text


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"``, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "fp32" or "bf16" for a precision option; "auto" picks bf16 where it is native and fast.

    Args:
        precision: "fp32", "bf16" or "auto".
        device: the training device.
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    return "fp32"


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1  # bytes; mallopt takes a C int
SYSTEM_MALLOC_ENV = "PERMAKEY_SYSTEM_MALLOC"


def reuse_freed_memory() -> bool:
    """Makes glibc's malloc keep the memory this process frees, for its next allocations.

    By default glibc maps every block of over 32 MiB afresh from the system and unmaps it when
    freed, so each training step's large activations (a `paper` step at batch 32 has many of
    100-460 MB) are page-faulted in and zero-filled by the kernel again on every step: on a
    2-core AMD EPYC (Zen 4) VM an `authors-code` step spent 1.8 of its 12.5 CPU seconds in the
    kernel, 0.2 with this (BENCHMARKS.md, "Keeping freed memory"). This sets ``M_MMAP_MAX`` to
    0 and ``M_TRIM_THRESHOLD`` to 2 GiB (``mallopt``; ``MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=2147483647`` set the same at start-up): freed blocks stay in the
    heap and the next step reuses them. The process's resident memory then stays near its
    peak instead of falling between steps. Process-wide and for the rest of the process; the
    `permakey` command and the experiment workers call it at start, the library never does on
    its own.

    Returns:
        True if applied; False off Linux/glibc, where mallopt fails, or when the environment
        variable ``PERMAKEY_SYSTEM_MALLOC`` is ``1`` (leave the allocator as it is).
    """
    if os.environ.get(SYSTEM_MALLOC_ENV) == "1":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
