"""Which instruction sets the bench's runtimes use, and holding them to AVX2 (``make bench AVX2=1``).

torch and the libraries under it read a limit from the environment when they
load: oneDNN (convolutions) ``ONEDNN_MAX_CPU_ISA``, ATen's own kernels
``ATEN_CPU_CAPABILITY``, MKL ``MKL_ENABLE_INSTRUCTIONS``, FBGEMM
``FBGEMM_ENABLE_INSTRUCTIONS``. So ``--avx2`` re-runs the bench in a fresh
process with them set, before torch is imported; the bench's child processes
(memory, ``qgis_process``, the model_core command line) inherit them.

ONNX Runtime has no such limit: its CPU kernels (MLAS) choose AVX2, AVX-512,
VNNI or AMX from the CPUID instruction when the library loads, with no
environment variable or session option to lower the choice. So ``--avx2`` also
preloads ``cpuid_avx2.c`` (built here with ``cc`` into ``bench/.cache/``), which
makes CPUID itself report an AVX2-only CPU to the process and its children,
through Linux's CPUID faulting. Where the CPU or kernel lacks CPUID faulting, or
no C compiler is installed, ONNX Runtime runs its native kernels and the bench
does not judge its rows. Either way the kernels run on this CPU's cores: the
figures are those of AVX2 code here, not of an older CPU's cores. The shim
answers CPUID from its own SIGSEGV handler, so the re-run leaves out
``PYTHONFAULTHANDLER`` (Python's fault handler would take SIGSEGV over).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

AVX2_LIMITS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
FLAG = "--avx2"
SHIM_SOURCE = Path(__file__).resolve().with_name("cpuid_avx2.c")
CACHE = Path(__file__).resolve().parent / ".cache"
NO_SHIM = "SCL_BENCH_NO_CPUID_SHIM"  # set, with the reason, where the CPUID shim could not be preloaded
# The flags cpuid_avx2.c clears, as /proc/cpuinfo names them.
WIDER_THAN_AVX2 = frozenset({
    "avx512f", "avx512dq", "avx512ifma", "avx512pf", "avx512er", "avx512cd", "avx512bw", "avx512vl",
    "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_4vnniw",
    "avx512_4fmaps", "avx512_vp2intersect", "amx_bf16", "avx512_fp16", "amx_tile", "amx_int8", "avx_vnni",
    "avx512_bf16", "amx_fp16", "avx_ifma", "avx_vnni_int8", "avx_ne_convert", "amx_complex", "avx10"})


def held_to_avx2(environ: Mapping[str, str]) -> bool:
    """Whether every AVX2 limit is set in ``environ``."""
    return all(environ.get(key) == value for key, value in AVX2_LIMITS.items())


def avx2_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with the AVX2 limits added."""
    return {**environ, **AVX2_LIMITS}


def cpuid_shim(cache: Path = CACHE) -> tuple[Path | None, str]:
    """``cpuid_avx2.so``, built from its source with ``cc`` if not yet built; or None and why it cannot be."""
    if "cpuid_fault" not in cpu_flags():
        return None, "this CPU or kernel has no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    digest = hashlib.sha256(SHIM_SOURCE.read_bytes()).hexdigest()[:12]
    built = cache / f"cpuid_avx2_{digest}.so"
    if built.exists():
        return built, ""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None, "no C compiler (cc) to build bench/cpuid_avx2.c; apt install gcc"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:  # a build of its own: two at once do not mix
            partial = Path(scratch) / built.name
            done = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(SHIM_SOURCE)],
                                  capture_output=True, text=True, check=False, timeout=120)
            if done.returncode != 0:
                return None, f"cc could not build bench/cpuid_avx2.c: {done.stderr.strip()[:300]}"
            os.replace(partial, built)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bench/cpuid_avx2.c could not be built into {cache}: {exc}"
    return built, ""


def hold_to_avx2_if_asked(argv: list[str]) -> None:
    """With ``--avx2`` in ``argv`` and the limits not yet set, run this command again with them (never returns).

    Call it before importing torch: the libraries read the limits once, when they load. The
    new process also preloads the CPUID shim where it can be built (``cpuid_shim``).
    """
    if FLAG in argv and not held_to_avx2(os.environ):
        environ = avx2_environment(os.environ)
        shim, why = cpuid_shim()
        if shim is None:
            environ[NO_SHIM] = why
        else:
            environ["LD_PRELOAD"] = ":".join(filter(None, [str(shim), os.environ.get("LD_PRELOAD", "")]))
            environ.pop("PYTHONFAULTHANDLER", None)
        command = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
        os.execve(sys.executable, [sys.executable, *command[1:]], environ)


def cpuid_state() -> str:
    """"held" when CPUID in this process answers through the shim (it then reports an AVX2-only CPU), "refused"
    when the shim is loaded but the kernel would not make CPUID fault, "not loaded" otherwise."""
    try:
        flag = ctypes.c_int.in_dll(ctypes.CDLL(None), "scl_bench_cpuid_held")
    except ValueError:  # no such symbol: the shim is not in this process
        return "not loaded"
    return "held" if flag.value == 1 else "refused"


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


def describe(torch_capability: str, environ: Mapping[str, str], flags: set[str],
             cpuid: str = "not loaded") -> dict[str, str]:
    """What each runtime used: torch's ATen capability and oneDNN limit, and ONNX Runtime's kernels.

    ``cpuid`` is ``cpuid_state()``: where "held", ONNX Runtime is held to AVX2 too.
    """
    onednn = environ.get("ONEDNN_MAX_CPU_ISA", "")
    held = held_to_avx2(environ)
    if cpuid == "held":
        how = " (held to AVX2: CPUID reports an AVX2-only CPU, bench/cpuid_avx2.c)"
        flags = flags - WIDER_THAN_AVX2
    elif held:
        why = environ.get(NO_SHIM) or {
            "refused": "the kernel refused to make CPUID fault (arch_prctl ARCH_SET_CPUID)",
        }.get(cpuid, "the CPUID shim did not load (see the loader's message above)")
        how = f" (NOT held to AVX2: MLAS chooses by CPUID, and {why})"
    else:
        how = " (chosen by CPUID)"
    return {
        "mode": "held to AVX2" if held else "native",
        "torch": f"ATen {torch_capability}, oneDNN {'max ' + onednn if onednn else 'native'}",
        "onnxruntime": onnxruntime_kernels(flags) + how,
        "cpuid": cpuid,
    }
