"""The plugin object QGIS creates: the Processing provider, the SCL DeepLab menu and toolbar, the compare dock."""

from __future__ import annotations

import importlib.util

from qgis.core import QgsApplication, QgsProcessingProvider
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QApplication, QMenu, QMessageBox, QToolBar, QToolButton

from ..algorithms.base import RESOURCES, torch_install_hint
from ..provider.provider import SclDeepLabProvider
from .compare_dock import CompareDock
from .menu import add_algorithm_actions
from .qt_compat import QAction
from .runtime_setup import SetupRuntimeTask, default_target, plan_setup, qgis_python

TITLE = "SCL DeepLab"
PROVIDER_ID = "scldeeplab"


def torch_missing() -> bool:
    """True when PyTorch or torchvision cannot be imported by the Python QGIS runs."""
    return any(importlib.util.find_spec(module) is None for module in ("torch", "torchvision"))


class SclDeepLabPlugin:
    """Registers the provider when QGIS (desktop or qgis_process) starts the plugin; adds the GUI in desktop."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider: SclDeepLabProvider | None = None
        self.menu: QMenu | None = None
        self.toolbar: QToolBar | None = None
        self.dock: CompareDock | None = None
        self.dock_action: QAction | None = None
        self.runtime_action: QAction | None = None
        self.runtime_task: SetupRuntimeTask | None = None
        self._menu_provider: QgsProcessingProvider | None = None

    @staticmethod
    def tr(text: str) -> str:
        return QCoreApplication.translate("SclDeepLabPlugin", text)

    def initProcessing(self) -> None:  # noqa: N802 - QGIS's name
        """Add the provider; qgis_process calls this without initGui."""
        if self.provider is None and self._registered() is None:
            provider = SclDeepLabProvider()
            # On a duplicate id the registry deletes the object, so keep it only when added.
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider

    @staticmethod
    def _registered() -> QgsProcessingProvider | None:
        """The registered SCL DeepLab provider: ours, or one a test harness registered first."""
        return QgsApplication.processingRegistry().providerById(PROVIDER_ID)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        """Add Raster > SCL DeepLab, the SCL DeepLab toolbar and the (hidden) compare dock."""
        self.initProcessing()
        main_window = self.iface.mainWindow()
        icon = QIcon(str(RESOURCES / "icon.svg"))

        self.dock = CompareDock(main_window)
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.dock_action = QAction(
            QgsApplication.getThemeIcon("/propertyicons/transparency.svg"),
            self.tr("Compare Prediction and Reference…"), main_window)
        self.dock_action.setObjectName("scldeeplab_compare")
        self.dock_action.setToolTip(self.tr("Show or hide the SCL DeepLab compare panel"))
        self.dock_action.setCheckable(True)
        self.dock.setToggleVisibilityAction(self.dock_action)
        self.runtime_action = QAction(QgsApplication.getThemeIcon("/mActionOptions.svg"),
                                      self.tr("Set up PyTorch runtime…"), main_window)
        self.runtime_action.setObjectName("scldeeplab_setup_runtime")
        self.runtime_action.setStatusTip(self.tr("Install PyTorch into a Python of its own for SCL DeepLab "
                                                 "(QGIS's Python stays untouched)"))
        self.runtime_action.triggered.connect(self.set_up_runtime)

        self.menu = QMenu(TITLE, main_window)
        self.menu.setObjectName("SclDeepLabMenu")
        self.menu.setIcon(icon)
        self._menu_provider = self._registered()
        self._fill_menu()
        # Processing reloads providers (e.g. after its settings change): the menu follows.
        self._menu_provider.algorithmsLoaded.connect(self._fill_menu)
        self.iface.rasterMenu().addMenu(self.menu)

        self.toolbar = self.iface.addToolBar(TITLE)
        self.toolbar.setObjectName("SclDeepLabToolbar")
        button = QToolButton(self.toolbar)
        button.setObjectName("SclDeepLabToolButton")
        button.setIcon(icon)
        button.setText(TITLE)
        button.setToolTip(self.tr("SCL DeepLab algorithms"))
        button.setMenu(self.menu)
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.toolbar.addWidget(button)
        self.toolbar.addAction(self.dock_action)

        if torch_missing():
            self.iface.messageBar().pushWarning(TITLE, torch_install_hint())

    def _fill_menu(self) -> None:
        self.menu.clear()
        add_algorithm_actions(self.menu, self._menu_provider)
        self.menu.addSeparator()
        self.menu.addAction(self.dock_action)
        self.menu.addAction(self.runtime_action)

    def set_up_runtime(self) -> None:
        """Show what the set-up will install and why, then run it as a background task."""
        python, target = qgis_python(), default_target()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            plan = plan_setup(python, target)
        except RuntimeError as exc:
            self.iface.messageBar().pushCritical(TITLE, str(exc))
            return
        finally:
            QApplication.restoreOverrideCursor()
        wheels = "CPU" if plan["variant"] == "cpu" else f"CUDA ({plan['variant']})"
        question = self.tr(
            "Install PyTorch with {wheels} wheels ({reason}), torchvision and rasterio into a Python of its own?\n\n"
            "Folder: {target}\nFrom: {python}\n\nThis downloads about 1 GB (several GB with CUDA) and takes a few "
            "minutes; QGIS's own Python is not changed."
        ).format(wheels=wheels, reason=plan["reason"], target=plan["target"], python=python)
        answer = QMessageBox.question(self.iface.mainWindow(), self.tr("Set up PyTorch runtime"), question)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.runtime_task = SetupRuntimeTask(python, target, on_done=self._runtime_done)
        self.runtime_action.setEnabled(False)
        QgsApplication.taskManager().addTask(self.runtime_task)
        self.iface.messageBar().pushInfo(TITLE, self.tr(
            "Setting up the PyTorch runtime: progress in the task manager, details in the SCL DeepLab log."))

    def _runtime_done(self, successful: bool, message: str) -> None:
        self.runtime_task = None
        if self.runtime_action is not None:
            self.runtime_action.setEnabled(True)
        if successful:
            self.iface.messageBar().pushSuccess(TITLE, message)
        else:
            self.iface.messageBar().pushCritical(TITLE, self.tr("Setting up the PyTorch runtime failed: {message}")
                                                 .format(message=message))

    def unload(self) -> None:
        """Remove everything initGui and initProcessing added."""
        if self.toolbar is not None:
            self.iface.mainWindow().removeToolBar(self.toolbar)
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.menu is not None:
            self.iface.rasterMenu().removeAction(self.menu.menuAction())
            if not sip.isdeleted(self._menu_provider):
                self._menu_provider.algorithmsLoaded.disconnect(self._fill_menu)
            self._menu_provider = None
            self.menu.deleteLater()
            self.menu = None
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.dock_action is not None:
            self.dock_action.deleteLater()
            self.dock_action = None
        if self.runtime_task is not None:
            self.runtime_task.on_done = None  # the set-up goes on and stores the setting, quietly
            self.runtime_task = None
        if self.runtime_action is not None:
            self.runtime_action.deleteLater()
            self.runtime_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
