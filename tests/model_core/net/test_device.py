"""Device and precision choice follows what the hardware has."""

from __future__ import annotations

import pytest
import torch
from scl_deeplab.model_core.errors import DeviceError
from scl_deeplab.model_core.net import device as dev


def test_auto_picks_cpu_without_gpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert dev.pick_device("auto").type == expected


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        assert dev.pick_device("cuda").type == "cuda"
        return
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        dev.pick_device("cuda")


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
