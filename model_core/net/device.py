"""Choosing the device and the precision the model runs in.

CPUs differ: with AMX or AVX512-BF16, bfloat16 autocast is about twice as fast
as float32; on AVX2-only CPUs (e.g. AMD EPYC here) it is several times slower.
So precision is chosen from what the CPU has, never assumed.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeviceError


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name, e.g. "Intel(R) Xeon(R) Processor"."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def onednn_allows_bf16() -> bool:
    """False when ONEDNN_MAX_CPU_ISA caps oneDNN below the bfloat16 instructions (e.g. AVX2)."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return isa in ("", "ALL", "DEFAULT") or any(part in isa for part in ("BF16", "AMX", "AVX10"))


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX or AVX512-BF16) and oneDNN may use it."""
    flags = cpu_flags()
    return bool({"amx_bf16", "avx512_bf16"} & flags) and onednn_allows_bf16()


def pick_device(name: str = "auto"):
    """A torch.device from "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps"."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f'Device "{name}" was asked for, but PyTorch sees no CUDA GPU here '
                f"(torch {torch.__version__}). Use DEVICE auto or cpu, or install a CUDA build of PyTorch."
            )
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError('Device "mps" was asked for, but Apple Metal is not available. Use auto or cpu.')
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise DeviceError(f'Unknown device "{name}". Use auto, cpu, cuda, cuda:N or mps.')


@dataclass(frozen=True)
class Precision:
    """How to run the model on a device: an autocast dtype (or None for float32) and why."""

    autocast_dtype: object | None
    reason: str

    @property
    def name(self) -> str:
        return "float32" if self.autocast_dtype is None else str(self.autocast_dtype).replace("torch.", "")


def pick_precision(device, mode: str = "auto") -> Precision:
    """Mixed precision where the hardware does it natively; "float32" forces full precision."""
    import torch

    if mode == "float32":
        return Precision(None, "float32 was asked for")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, "CUDA GPU with bfloat16 support")
        return Precision(torch.float16, "CUDA GPU (float16 with a grad scaler when training)")
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return Precision(torch.bfloat16, "CPU has native bfloat16 (AMX/AVX512-BF16)")
        return Precision(None, "CPU lacks native bfloat16, where float32 is faster")
    return Precision(None, f"float32 on {device.type}")


def describe(device, precision: Precision) -> str:
    """One line for the log: device and precision and why."""
    where = str(device)
    if device.type == "cuda":
        import torch

        where = f"{device} ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        where = f"cpu ({cpu_model()})"
    return f"Device {where}, precision {precision.name}: {precision.reason}."
