"""RUNTIME and WORKER_PYTHON: the QGIS settings that say where the model runs, and their environment overrides.

RUNTIME is ``auto`` (in-process when torch imports in QGIS's Python, else the worker), ``in-process`` or
``worker``; WORKER_PYTHON is an interpreter with torch, torchvision and rasterio. QGIS stores them under
``scl_deeplab/runtime`` and ``scl_deeplab/worker_python`` (Processing > Options > Providers > SCL DeepLab,
see provider/settings.py); SCL_DEEPLAB_RUNTIME and SCL_DEEPLAB_WORKER_PYTHON override them (for
qgis_process). Without qgis (the command line, tests) only the environment counts.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import RuntimeSettingError

RUNTIMES = ("auto", "in-process", "worker")
RUNTIME_KEY, WORKER_PYTHON_KEY = "scl_deeplab/runtime", "scl_deeplab/worker_python"
RUNTIME_ENV, WORKER_PYTHON_ENV = "SCL_DEEPLAB_RUNTIME", "SCL_DEEPLAB_WORKER_PYTHON"
ENVIRONMENT = {RUNTIME_KEY: RUNTIME_ENV, WORKER_PYTHON_KEY: WORKER_PYTHON_ENV}
WHERE = "Processing > Options > Providers > SCL DeepLab"


def stored(key: str, default: Any = None) -> Any:
    """The QGIS setting ``key``; ``default`` when unset or when qgis is not there."""
    try:
        from qgis.core import QgsSettings
    except ImportError:
        return default
    return QgsSettings().value(key, default)


def parse_runtime(value: Any) -> str:
    """A RUNTIME value as one of ``RUNTIMES``; Processing's options dialog stores the index."""
    if value is None or value == "":
        return "auto"
    if isinstance(value, int) or str(value).isdigit():
        return RUNTIMES[int(value)] if int(value) < len(RUNTIMES) else "auto"
    name = str(value).strip().lower()
    if name not in RUNTIMES:
        raise RuntimeSettingError(
            f'Unknown SCL DeepLab runtime "{name}". Set {RUNTIME_ENV} or {WHERE} > Runtime to one of: '
            f"{', '.join(RUNTIMES)}."
        )
    return name


def runtime_setting() -> str:
    """RUNTIME from the environment, else the QGIS setting, else "auto"."""
    return parse_runtime(os.environ.get(RUNTIME_ENV) or stored(RUNTIME_KEY, "auto"))


def worker_python() -> str:
    """WORKER_PYTHON from the environment, else the QGIS setting; "" when not set."""
    return str(os.environ.get(WORKER_PYTHON_ENV) or stored(WORKER_PYTHON_KEY, "") or "").strip()


def store_worker_python(python: str) -> str:
    """Save WORKER_PYTHON (and RUNTIME auto when unset) in QGIS's settings; a sentence for the user."""
    from qgis.core import QgsSettings

    settings = QgsSettings()
    settings.setValue(WORKER_PYTHON_KEY, python)
    if settings.value(RUNTIME_KEY, None) in (None, ""):
        settings.setValue(RUNTIME_KEY, RUNTIMES.index("auto"))  # Processing's options store the index
    _refresh_processing_options()
    message = f"SCL DeepLab will run PyTorch with {python}."
    try:
        runtime = runtime_setting()
    except RuntimeSettingError as exc:  # an unknown value in SCL_DEEPLAB_RUNTIME
        return f"{message} {exc}"
    if runtime == "in-process":
        message += f" Runtime is set to in-process: change it to auto or worker in {WHERE} to use it."
    return message


def _refresh_processing_options() -> None:
    """Processing's options dialog keeps its own copy: refresh it, or its OK would write the old value back."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    for setting in ProcessingConfig.settings.values():
        if getattr(setting, "qname", None) in ENVIRONMENT:
            setting.read()
