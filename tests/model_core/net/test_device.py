"""Device and precision choice follows what the hardware has."""

from __future__ import annotations

import pytest
import torch
from scl_deeplab.model_core.errors import DeviceError
from scl_deeplab.model_core.net import device as dev


def hardware(monkeypatch, *, cuda: bool, mps: bool) -> None:
    """Pretend this machine has (or lacks) a CUDA GPU and Apple Metal, whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(("cuda", "mps", "expected"),
                         [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    hardware(monkeypatch, cuda=cuda, mps=mps)
    assert dev.pick_device("auto").type == expected
    assert dev.pick_device("").type == expected  # empty means auto
    assert dev.pick_device("cpu").type == "cpu"  # asked for by name, whatever else there is


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    hardware(monkeypatch, cuda=False, mps=True)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        dev.pick_device("cuda")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        dev.pick_device("cuda:1")
    hardware(monkeypatch, cuda=True, mps=False)
    assert dev.pick_device(" CUDA:1 ") == torch.device("cuda", 1)


def test_mps_without_metal_is_a_clear_error(monkeypatch):
    hardware(monkeypatch, cuda=True, mps=False)
    with pytest.raises(DeviceError, match="Apple Metal is not available"):
        dev.pick_device("mps")
    hardware(monkeypatch, cuda=False, mps=True)
    assert dev.pick_device("mps").type == "mps"


def test_cpu_precision_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert dev.pick_precision(torch.device("cpu")).autocast_dtype is None
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert dev.pick_precision(torch.device("cpu")).autocast_dtype is torch.bfloat16
    assert dev.pick_precision(torch.device("cpu"), "float32").autocast_dtype is None


@pytest.mark.parametrize(("isa", "native"), [("", True), ("DEFAULT", True), ("AVX512_CORE_BF16", True),
                                             ("AVX10_1_512_AMX", True), ("AVX2", False), ("AVX512_CORE", False)])
def test_a_onednn_isa_cap_below_bf16_means_float32(monkeypatch, isa, native):
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert dev.cpu_has_native_bf16() is native
    assert (dev.pick_precision(torch.device("cpu")).autocast_dtype is torch.bfloat16) is native


def test_unknown_device_name_is_refused():
    with pytest.raises(DeviceError, match="Unknown device"):
        dev.pick_device("tpu")
