"""The plugin object QGIS creates: it registers the SCL DeepLab Processing provider."""

from __future__ import annotations

from qgis.core import QgsApplication

from ..provider.provider import SclDeepLabProvider


class SclDeepLabPlugin:
    """Registers the provider when QGIS (desktop or qgis_process) starts the plugin."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: SclDeepLabProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        """Add the provider; qgis_process calls this without initGui."""
        if self.provider is None:
            self.provider = SclDeepLabProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
