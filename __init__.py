"""SCL DeepLab, a QGIS plugin: DeepLabv3 land cover from Sentinel-2 true colour."""


def classFactory(iface):  # noqa: N802 - QGIS's name
    """Called by QGIS to create the plugin."""
    from .plugin.plugin import SclDeepLabPlugin

    return SclDeepLabPlugin(iface)
