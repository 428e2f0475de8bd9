"""This Python: its standalone interpreter, whether it imports PyTorch, and how to install PyTorch into it.

Inside QGIS ``sys.executable`` is often QGIS itself, or whatever ``python3`` comes first on PATH, so the
interpreter is looked for where each platform puts it for this very Python version.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

TORCH_MODULES = ("torch", "torchvision")


def _version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def this_python() -> str | None:
    """The interpreter of the running Python's version and installation; None when none is found.

    Looks beside ``sys.prefix`` (Linux ``bin/python3.X``, OSGeo4W's ``apps/Python3X/python.exe``), in
    QGIS.app's ``Contents/MacOS/bin``, then takes ``sys.executable`` when it is a Python, then
    ``python3.X`` in /usr/bin or on PATH.
    """
    prefix, program_dir = Path(sys.prefix), Path(sys.executable).parent
    if sys.platform.startswith("win"):
        candidates = [prefix / "python.exe"]
    else:
        candidates = [prefix / "bin" / f"python{_version()}", prefix / "bin" / "python3",
                      program_dir / "bin" / "python3"]
    if Path(sys.executable).name.lower().startswith("python"):
        candidates.append(Path(sys.executable))
    candidates.append(Path("/usr/bin") / f"python{_version()}")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(f"python{_version()}")


def torch_importable() -> bool:
    """True when this Python finds torch and torchvision (without importing them: that takes seconds)."""
    return all(importlib.util.find_spec(name) is not None for name in TORCH_MODULES)


def _linux_pip_install() -> str:
    """The pip command for this Python; Debian and Ubuntu's system Python wants a user install (PEP 668)."""
    command = f"{this_python() or 'python3'} -m pip install"
    managed = (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
    if managed and sys.prefix == sys.base_prefix:
        command += " --user --break-system-packages"
    return command


def _pip_install_how(packages: str) -> str:
    """How to pip-install ``packages`` into the Python QGIS uses, on this platform."""
    if sys.platform.startswith("win"):
        return f'open the "OSGeo4W Shell" and run: python -m pip install {packages}'
    if sys.platform == "darwin":
        return f"run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install {packages}"
    return f"run: {_linux_pip_install()} {packages}"


def torch_install_hint() -> str:
    """What to do when PyTorch is missing from the Python QGIS runs."""
    return (
        "PyTorch and torchvision are not installed in the Python that QGIS uses. "
        f"To install them, {_pip_install_how('torch torchvision')}; then restart QGIS."
    )


def onnxruntime_importable() -> bool:
    """True when this Python finds onnxruntime (enough to predict with .onnx models, without PyTorch)."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnxruntime_install_hint() -> str:
    """What to do when ONNX Runtime is missing from the Python QGIS runs (.onnx models need only it)."""
    return (
        "ONNX Runtime is not installed in the Python that QGIS uses, so .onnx models cannot run "
        f"(pip install onnxruntime). To install it, {_pip_install_how('onnxruntime')}; then restart QGIS."
    )
