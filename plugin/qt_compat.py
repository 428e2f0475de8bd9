"""Qt classes that changed module between Qt 5 (QGIS 3) and Qt 6 (QGIS 4)."""

from __future__ import annotations

try:
    from qgis.PyQt.QtGui import QAction  # Qt 6 moved it to QtGui
except ImportError:
    from qgis.PyQt.QtWidgets import QAction  # Qt 5

__all__ = ["QAction"]
