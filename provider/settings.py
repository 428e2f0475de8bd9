"""The provider's runtime settings in Processing > Options > Providers > SCL DeepLab.

Stored by QGIS under ``scl_deeplab/runtime`` and ``scl_deeplab/worker_python``; runtime/settings.py owns the
keys, reads them and lets environment variables override them. Without the Processing plugin's options (a
bare QgsApplication) the settings simply are not shown.
"""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from ..runtime.settings import ENVIRONMENT, RUNTIME_KEY, RUNTIMES, WORKER_PYTHON_KEY

NAMES = ENVIRONMENT  # Processing's setting names are the environment variables that override them


def add_settings(provider: QgsProcessingProvider) -> None:
    """Show RUNTIME and WORKER_PYTHON in Processing's options, read from QGIS settings."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return
    group = provider.name()
    ProcessingConfig.settingIcons[group] = provider.icon()
    runtime = Setting(group, NAMES[RUNTIME_KEY], provider.tr("Runtime (auto, in-process or worker)"), RUNTIMES[0],
                      valuetype=Setting.SELECTION, options=list(RUNTIMES))
    python = Setting(group, NAMES[WORKER_PYTHON_KEY],
                     provider.tr("Worker Python (an interpreter with torch, torchvision and rasterio)"), "",
                     valuetype=Setting.FILE)
    for key, setting in ((RUNTIME_KEY, runtime), (WORKER_PYTHON_KEY, python)):
        setting.qname = key  # our own keys, not Processing/Configuration/...
        ProcessingConfig.addSetting(setting)
        setting.read()


def remove_settings() -> None:
    """Take the settings out of Processing's options again (the stored values stay)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    for name in NAMES.values():
        ProcessingConfig.settings.pop(name, None)
