"""Which instruction sets the bench's runtimes use, and holding them to AVX2 (``make bench AVX2=1``).

torch and the libraries under it read a limit from the environment when they
load: oneDNN (convolutions) ``ONEDNN_MAX_CPU_ISA``, ATen's own kernels
``ATEN_CPU_CAPABILITY``, MKL ``MKL_ENABLE_INSTRUCTIONS``, FBGEMM
``FBGEMM_ENABLE_INSTRUCTIONS``. So ``--avx2`` re-runs the bench in a fresh
process with them set, before torch is imported; the bench's child processes
(memory, ``qgis_process``, the model_core command line) inherit them.

ONNX Runtime cannot be held so: its CPU kernels (MLAS) choose AVX2, AVX-512,
VNNI or AMX from the CPUID instruction when the library loads, with no
environment variable or session option to lower the choice (the published
wheels build every kernel in); only a build of ONNX Runtime without them, or an
AVX2-only CPU, gives its AVX2 figure. The bench says which kernels it used.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

AVX2_LIMITS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
FLAG = "--avx2"


def held_to_avx2(environ: Mapping[str, str]) -> bool:
    """Whether every AVX2 limit is set in ``environ``."""
    return all(environ.get(key) == value for key, value in AVX2_LIMITS.items())


def avx2_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the AVX2 limits added."""
    return {**environ, **AVX2_LIMITS}


def hold_to_avx2_if_asked(argv: list[str]) -> None:
    """With ``--avx2`` in ``argv`` and the limits not yet set, run this command again with them (never returns).

    Call it before importing torch: the libraries read the limits once, when they load.
    """
    if FLAG in argv and not held_to_avx2(os.environ):
        command = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
        os.execve(sys.executable, [sys.executable, *command[1:]], avx2_environment(os.environ))


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where it does not)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def onnxruntime_kernels(flags: set[str]) -> str:
    """The widest x86 kernels ONNX Runtime's MLAS may pick on a CPU with these flags, int8 and float32."""
    if "avx2" not in flags:
        return "int8 and float32 below AVX2 (SSE/AVX kernels)"
    avx512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags
    int8 = [name for name, present in (
        ("AMX-INT8", {"amx_tile", "amx_int8"} <= flags),
        ("AVX-512 VNNI", avx512 and "avx512_vnni" in flags),
        ("AVX-512", avx512 and "avx512_vnni" not in flags),
        ("AVX-VNNI", not avx512 and "avx_vnni" in flags),
    ) if present] or ["AVX2"]
    return f"int8 {' + '.join(int8)}, float32 {'AVX-512F' if 'avx512f' in flags else 'AVX2/FMA3'}"


def describe(torch_capability: str, environ: Mapping[str, str], flags: set[str]) -> dict[str, str]:
    """What each runtime used: torch's ATen capability and oneDNN limit, and ONNX Runtime's kernels."""
    onednn = environ.get("ONEDNN_MAX_CPU_ISA", "")
    held = held_to_avx2(environ)
    return {
        "mode": "held to AVX2" if held else "native",
        "torch": f"ATen {torch_capability}, oneDNN {'max ' + onednn if onednn else 'native'}",
        "onnxruntime": onnxruntime_kernels(flags) + (" (NOT held to AVX2: MLAS chooses by CPUID, no switch)"
                                                     if held else " (chosen by CPUID)"),
    }
