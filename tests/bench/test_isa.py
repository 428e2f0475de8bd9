"""The bench's AVX2 switch (bench/isa.py): torch and child processes held to AVX2, ONNX Runtime reported as it is."""

from __future__ import annotations

import importlib.util
import json
import os
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
                  "child_env": json.loads(child.stdout)}}))
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


def test_without_the_flag_nothing_is_limited(tmp_path):
    native = _probe(tmp_path, "--quick")
    assert not any(k in native["child_env"] for k in isa.AVX2_LIMITS)
    assert isa.describe(native["capability"], native["child_env"], set())["mode"] == "native"


def test_onnxruntime_kernels_follow_the_cpu_flags_and_are_never_called_avx2_held():
    assert isa.onnxruntime_kernels({"avx2", "fma"}) == "int8 AVX2, float32 AVX2/FMA3"
    assert isa.onnxruntime_kernels({"avx2", "fma", "avx_vnni"}) == "int8 AVX-VNNI, float32 AVX2/FMA3"
    amx = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "amx_tile", "amx_int8"}
    assert isa.onnxruntime_kernels(amx) == "int8 AMX-INT8 + AVX-512 VNNI, float32 AVX-512F"
    described = isa.describe("AVX2", isa.avx2_environment({}), amx)
    assert described["mode"] == "held to AVX2"
    assert described["torch"] == "ATen AVX2, oneDNN max AVX2"
    assert "NOT held to AVX2" in described["onnxruntime"] and "AMX-INT8" in described["onnxruntime"]


def test_cpu_flags_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f\nbugs\t\t: none\n", encoding="utf-8")
    assert isa.cpu_flags(cpuinfo) == {"fpu", "avx2", "fma", "avx512f"}
    assert isa.cpu_flags(tmp_path / "missing") == set()
