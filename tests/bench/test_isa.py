"""The bench's AVX2 switch (bench/isa.py): torch, child processes and (through CPUID) ONNX Runtime held to AVX2."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("bench_isa", BENCH / "isa.py")
isa = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isa)

PROBE = """
import json, os, subprocess, sys
sys.path.insert(0, {bench!r})
import isa
isa.hold_to_avx2_if_asked(sys.argv)
import torch
child = subprocess.run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                       capture_output=True, text=True, check=True)
print(json.dumps({{"capability": torch.backends.cpu.get_cpu_capability(), "argv": sys.argv[1:],
                  "child_env": json.loads(child.stdout), "cpuid": isa.cpuid_state(),
                  "no_shim": os.environ.get(isa.NO_SHIM)}}))
"""


def _probe(tmp_path: Path, *args: str) -> dict:
    script = tmp_path / "probe.py"
    script.write_text(PROBE.format(bench=str(BENCH)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in isa.AVX2_LIMITS}
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_avx2_flag_holds_torch_and_child_processes_to_avx2(tmp_path):
    held = _probe(tmp_path, "--quick", "--avx2")
    assert held["capability"] == "AVX2"  # ATen, as torch reports it after the re-run
    assert {k: held["child_env"].get(k) for k in isa.AVX2_LIMITS} == isa.AVX2_LIMITS  # children inherit the limits
    assert held["argv"] == ["--quick", "--avx2"]  # the re-run keeps the command line
    shim, why = isa.cpuid_shim()
    if shim is None:  # the report can say why ONNX Runtime is not held
        assert held["cpuid"] == "not loaded" and held["no_shim"] == why
    else:  # the shim is loaded (whether CPUID then faults: test_cpuid_shim_makes_cpuid_report_an_avx2_only_cpu)
        assert held["cpuid"] in ("held", "refused") and held["no_shim"] is None
        assert str(shim) in held["child_env"]["LD_PRELOAD"].split(":")  # children load it too


def test_without_the_flag_nothing_is_limited(tmp_path):
    native = _probe(tmp_path, "--quick")
    assert not any(k in native["child_env"] for k in isa.AVX2_LIMITS)
    assert native["cpuid"] == "not loaded" and "cpuid_avx2" not in native["child_env"].get("LD_PRELOAD", "")
    assert isa.describe(native["capability"], native["child_env"], set())["mode"] == "native"


def test_onnxruntime_kernels_follow_the_cpu_flags_and_are_called_held_only_through_cpuid():
    assert isa.onnxruntime_kernels({"avx2", "fma"}) == "int8 AVX2, float32 AVX2/FMA3"
    assert isa.onnxruntime_kernels({"avx2", "fma", "avx_vnni"}) == "int8 AVX-VNNI, float32 AVX2/FMA3"
    amx = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "amx_tile", "amx_int8"}
    assert isa.onnxruntime_kernels(amx) == "int8 AMX-INT8 + AVX-512 VNNI, float32 AVX-512F"
    limits = isa.avx2_environment({})
    described = isa.describe("AVX2", limits, amx)
    assert described["mode"] == "held to AVX2"
    assert described["torch"] == "ATen AVX2, oneDNN max AVX2"
    assert "NOT held to AVX2" in described["onnxruntime"] and "AMX-INT8" in described["onnxruntime"]
    assert "no C compiler" in isa.describe("AVX2", {**limits, isa.NO_SHIM: "no C compiler (cc)"}, amx)["onnxruntime"]
    assert "refused to make CPUID fault" in isa.describe("AVX2", limits, amx, cpuid="refused")["onnxruntime"]
    through_cpuid = isa.describe("AVX2", limits, amx | {"fma"}, cpuid="held")
    assert through_cpuid["onnxruntime"].startswith("int8 AVX2, float32 AVX2/FMA3 (held to AVX2")
    assert through_cpuid["cpuid"] == "held" and described["cpuid"] == "not loaded"


CPUID_PROBE = r"""
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <stdio.h>
int main(void) {
    unsigned a, b, c, d;
    const int *held = dlsym(RTLD_DEFAULT, "scl_bench_cpuid_held");
    __cpuid_count(7, 0, a, b, c, d);
    /* the shim's flag (-1: not loaded), then AVX2, AVX-512F, AVX-512 VNNI, AMX-INT8 */
    printf("%d %u %u %u %u\n", held ? *held : -1, (b >> 5) & 1, (b >> 16) & 1, (c >> 11) & 1, (d >> 25) & 1);
    return 0;
}
"""


def test_cpuid_shim_makes_cpuid_report_an_avx2_only_cpu(tmp_path):
    shim, why = isa.cpuid_shim(tmp_path)
    compiler = shutil.which("cc") or shutil.which("gcc")
    if "cpuid_fault" not in isa.cpu_flags() or compiler is None:  # the bench then says why and judges no ONNX row
        assert shim is None and ("cpuid_fault" in why or "no C compiler" in why)
        return
    assert shim is not None and shim.parent == tmp_path and isa.cpuid_shim(tmp_path) == (shim, "")  # built once
    source = tmp_path / "cpuid.c"
    source.write_text(CPUID_PROBE, encoding="utf-8")
    subprocess.run([compiler, "-o", str(tmp_path / "cpuid"), str(source), "-ldl"], check=True)

    def bits(environ: dict[str, str]) -> list[int]:
        out = subprocess.run([str(tmp_path / "cpuid")], capture_output=True, text=True, env=environ, check=True)
        return [int(v) for v in out.stdout.split()]

    native = bits(dict(os.environ))
    held = bits({**os.environ, "LD_PRELOAD": str(shim)})
    assert native[0] == -1 and held[0] == 1  # loaded, and CPUID faults into it (it says so on any CPU)
    assert held[1:] == [native[1], 0, 0, 0]  # AVX2 as this CPU has it; AVX-512F, AVX-512 VNNI and AMX-INT8 gone


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f\nbugs\t\t: none\n", encoding="utf-8")
    assert isa.cpu_flags(cpuinfo) == {"fpu", "avx2", "fma", "avx512f"}
    assert isa.cpu_flags(tmp_path / "missing") == set()
