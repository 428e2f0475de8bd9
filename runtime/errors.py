"""The runtime's errors; like model_core's they derive from ``SclDeepLabError``, so algorithms show their messages."""

from __future__ import annotations

from ..model_core.errors import SclDeepLabError


class RuntimeSettingError(SclDeepLabError, ValueError):
    """RUNTIME (the QGIS setting or its environment variable) holds an unknown value."""


class WorkerError(SclDeepLabError, RuntimeError):
    """The worker Python is not set, does not start, or stopped without a result."""


class RuntimeSetupError(SclDeepLabError, RuntimeError):
    """The worker runtime could not be set up; the message says what to do."""


class TorchMissingError(SclDeepLabError, ImportError):
    """Neither QGIS's Python nor a worker Python can import PyTorch; the message says how to get it."""


class OnnxRuntimeMissingError(SclDeepLabError, ImportError):
    """An .onnx model is to run in QGIS's Python, which has neither ONNX Runtime nor PyTorch."""
