"""What this Python can run: versions, GPUs, CPU, and the device and precision the algorithms will pick.

Works without torch: then the report says what is missing instead of failing.
Everything in the report is a plain string, number or bool, so it travels as JSON.
"""

from __future__ import annotations

import importlib
import platform
import sys
from typing import Any

from ..net.device import cpu_has_native_bf16, cpu_model
from ..net.weight_sets import on_disk_label, summary

PACKAGES = ("torch", "torchvision", "rasterio", "numpy")


def package_version(name: str) -> str:
    """The installed version of ``name``, or "missing" when it does not import."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "missing"
    except OSError as exc:  # e.g. a CUDA library that fails to load on Windows
        return f"missing (import failed: {exc})"
    return str(getattr(module, "__version__", "unknown"))


def _torch_report() -> dict[str, Any]:
    """GPU availability and the automatic device and precision; empty values without torch."""
    import torch

    from ..net.device import describe, pick_device, pick_precision

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    device = pick_device("auto")
    precision = pick_precision(device, "auto")
    return {
        "cuda_available": cuda,
        "cuda_version": str(torch.version.cuda or ""),
        "cuda_devices": "; ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        if cuda
        else "",
        "mps_available": bool(mps_backend is not None and mps_backend.is_available()),
        "device": str(device),
        "precision": precision.name,
        "reason": describe(device, precision),
    }


def runtime_report() -> dict[str, Any]:
    """The runtime's facts as a flat dict of strings, numbers and bools."""
    report: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "weights": on_disk_label(),
    }
    for name in PACKAGES:
        report[f"{name}_version"] = package_version(name)
    report["onnxruntime_version"] = package_version("onnxruntime")  # optional: .onnx models need only it
    missing = [name for name in PACKAGES if report[f"{name}_version"].startswith("missing")]
    report["missing"] = ", ".join(missing)
    if "torch" in missing or "torchvision" in missing:
        report.update(cuda_available=False, cuda_version="", cuda_devices="", mps_available=False,
                      device="", precision="", reason="PyTorch or torchvision is missing in this Python.")
    else:
        report.update(_torch_report())
    return report


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as log lines for a person."""
    lines = [
        f"Python {report['python']} ({report['python_executable']}) on {report['platform']}",
        "Packages: " + ", ".join(f"{name} {report[f'{name}_version']}" for name in PACKAGES),
        f"CPU: {report['cpu']} (native bfloat16: {'yes' if report['cpu_native_bf16'] else 'no'})",
    ]
    onnx = report.get("onnxruntime_version", "missing")
    lines.append(f"ONNX Runtime: {onnx} (.onnx models predict with it alone, without PyTorch)"
                 if not onnx.startswith("missing") else
                 "ONNX Runtime: missing (pip install onnxruntime to predict .onnx models without PyTorch)")
    if report["missing"]:
        lines.append(f"Missing: {report['missing']}.")
    lines.append("Pretrained weights (PRETRAINED):\n" + summary())
    if report["device"]:
        gpus = report["cuda_devices"] or "none"
        lines.append(f"CUDA: {'yes' if report['cuda_available'] else 'no'} (GPUs: {gpus}); "
                     f"Apple MPS: {'yes' if report['mps_available'] else 'no'}")
        lines.append(f"Algorithms with DEVICE auto will use: {report['reason']}")
    return lines
