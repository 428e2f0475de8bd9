"""The desktop side: Raster menu and toolbar entries per algorithm, the compare dock, a clean unload."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import rasterio
from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QTimer
from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QMenu, QToolButton
from rasterio.transform import from_origin
from scl_deeplab.algorithms.base import torch_install_hint
from scl_deeplab.model_core.data.rasters import write_scl
from scl_deeplab.plugin.plugin import SclDeepLabPlugin

# Row 3 of the reference is no data, so only rows 1-2 count. Of those 8 pixels one vegetation (4)
# pixel is predicted as water (6): accuracy 7/8; IoU vegetation 3/4, water 4/5, mean 0.775;
# chance agreement (4/8 * 3/8 + 4/8 * 5/8) = 1/2, kappa (7/8 - 1/2) / (1 - 1/2) = 0.75.
REFERENCE = np.array([[4, 4, 6, 6], [4, 4, 6, 6], [0, 0, 0, 0]], np.uint8)
PREDICTION = np.array([[4, 4, 6, 6], [4, 6, 6, 6], [4, 4, 6, 6]], np.uint8)
PROFILE = {"width": 4, "height": 3, "crs": "EPSG:32633", "transform": from_origin(500000.0, 5000000.0, 20.0, 20.0)}


def _flush_deletes() -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def raster_menu(qgis_iface, monkeypatch):
    """A real Raster menu in place of the stub's MagicMock, as QGIS desktop has one."""
    menu = QMenu("&Raster", qgis_iface.mainWindow())
    monkeypatch.setattr(qgis_iface, "rasterMenu", lambda: menu, raising=False)
    yield menu
    menu.deleteLater()
    _flush_deletes()


@pytest.fixture
def main_window(qgis_iface, monkeypatch):
    """The stub's main window, shown and docking for real, as QGIS's main window does."""
    window = qgis_iface.mainWindow()
    monkeypatch.setattr(qgis_iface, "addDockWidget", window.addDockWidget, raising=False)
    monkeypatch.setattr(qgis_iface, "removeDockWidget", window.removeDockWidget, raising=False)
    window.show()
    yield window
    window.hide()


@pytest.fixture
def plugin(qgis_iface, qgis_processing, qgis_new_project, raster_menu, main_window):
    """The plugin after QGIS called initGui; unloaded afterwards unless the test did."""
    instance = SclDeepLabPlugin(qgis_iface)
    instance.initGui()
    yield instance
    if instance.menu is not None:
        instance.unload()
    _flush_deletes()


@pytest.fixture
def scl_layers(tmp_path, qgis_new_project):
    """A prediction above a reference SCL layer (both 4x3 GeoTIFFs) and a vector layer, in the project."""
    write_scl(tmp_path / "reference.tif", REFERENCE, PROFILE)
    write_scl(tmp_path / "prediction.tif", PREDICTION, PROFILE)
    prediction = QgsRasterLayer(str(tmp_path / "prediction.tif"), "prediction")
    reference = QgsRasterLayer(str(tmp_path / "reference.tif"), "reference SCL")
    points = QgsVectorLayer("Point?crs=EPSG:32633", "points", "memory")
    assert prediction.isValid() and reference.isValid()
    QgsProject.instance().addMapLayers([points, prediction, reference])
    return prediction, reference


def _names_in_drawing_order() -> list[str]:
    return [layer.name() for layer in QgsProject.instance().layerTreeRoot().layerOrder()]


def _scl_menu(raster_menu: QMenu) -> QMenu | None:
    found = [action.menu() for action in raster_menu.actions() if action.text() == "SCL DeepLab"]
    assert len(found) <= 1
    return found[0] if found else None


def test_menu_and_toolbar_have_an_entry_per_algorithm(plugin, raster_menu):
    algorithm_ids = {alg.id() for alg in QgsApplication.processingRegistry().providerById("scldeeplab").algorithms()}
    assert {"scldeeplab:samplescene", "scldeeplab:makepatches"} <= algorithm_ids

    menu = _scl_menu(raster_menu)
    assert menu is not None
    assert {action.data() for action in menu.actions() if action.data()} == algorithm_ids
    assert plugin.dock_action in menu.actions()

    assert plugin.toolbar.windowTitle() == "SCL DeepLab"
    button = plugin.toolbar.findChild(QToolButton, "SclDeepLabToolButton")
    assert button.menu() is menu
    assert plugin.dock_action in plugin.toolbar.actions()


def test_menu_entry_opens_the_algorithm_dialog(plugin, raster_menu, qgis_iface, monkeypatch):
    # The stub interface answers a MagicMock where the dialog's form expects QGIS's browser model.
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: None, raising=False)
    opened = []

    def close_dialog():
        # The offscreen platform activates no window, so look for the dialog among the top levels.
        dialogs = [w for w in QApplication.topLevelWidgets() if w.isVisible() and hasattr(w, "algorithm")]
        if not dialogs:
            QTimer.singleShot(20, close_dialog)
            return
        opened.extend(dialog.algorithm().id() for dialog in dialogs)
        for dialog in dialogs:
            dialog.reject()

    action = next(a for a in _scl_menu(raster_menu).actions() if a.data() == "scldeeplab:makepatches")
    QTimer.singleShot(0, close_dialog)
    action.trigger()
    assert opened == ["scldeeplab:makepatches"]


def test_dock_action_toggles_the_compare_dock(plugin):
    assert plugin.dock.isHidden()
    plugin.dock_action.trigger()
    assert not plugin.dock.isHidden()
    assert plugin.dock_action.isChecked()
    plugin.dock_action.trigger()
    assert plugin.dock.isHidden()


def test_unload_removes_menu_toolbar_dock_and_provider(qgis_iface, plugin, raster_menu):
    registry = QgsApplication.processingRegistry()
    added_provider = plugin.provider is not None
    widgets = [plugin.menu, plugin.toolbar, plugin.dock, plugin.dock_action, *plugin.menu.actions()]

    plugin.unload()
    _flush_deletes()

    assert _scl_menu(raster_menu) is None
    assert all(sip.isdeleted(widget) for widget in widgets)
    assert qgis_iface.mainWindow().findChildren(QDockWidget, "SclDeepLabCompareDock") == []
    # A provider registered by the test session's conftest is not the plugin's to remove.
    assert (registry.providerById("scldeeplab") is None) == added_provider
    assert plugin.provider is None


def test_missing_torch_is_announced_with_the_install_command(qgis_iface, qgis_new_project, raster_menu, monkeypatch):
    qgis_iface.messageBar().clear_messages()
    monkeypatch.setitem(sys.modules, "torch", None)  # as if not installed: find_spec gives None
    instance = SclDeepLabPlugin(qgis_iface)
    instance.initGui()
    try:
        warnings = qgis_iface.messageBar().get_messages(Qgis.Warning)
    finally:
        instance.unload()
        _flush_deletes()
    assert warnings == [f"SCL DeepLab:{torch_install_hint()}"]
    assert "pip install torch torchvision" in warnings[0]


def test_dock_lists_raster_layers_and_picks_prediction_and_reference(plugin, scl_layers):
    prediction, reference = scl_layers
    dock = plugin.dock
    assert dock.prediction_combo.count() == 2  # the vector layer is not offered
    assert dock.prediction() is prediction
    assert dock.reference() is reference
    assert dock.top_label.text() == "prediction"
    assert dock.evaluate_button.isEnabled()

    dock.reference_combo.setLayer(prediction)
    assert not dock.evaluate_button.isEnabled()
    assert dock.status_label.text() == "Pick two different raster layers."


def test_opacity_slider_blends_the_upper_layer(plugin, scl_layers):
    prediction, reference = scl_layers
    plugin.dock.opacity_slider.setValue(40)
    assert prediction.renderer().opacity() == pytest.approx(0.4)
    assert reference.renderer().opacity() == pytest.approx(1.0)
    assert plugin.dock.opacity_value.text() == "40%"


def test_swap_reorders_the_layer_tree_and_carries_the_blend(plugin, scl_layers):
    prediction, reference = scl_layers
    dock = plugin.dock
    dock.opacity_slider.setValue(30)
    assert _names_in_drawing_order() == ["points", "prediction", "reference SCL"]

    dock.swap_button.click()
    assert _names_in_drawing_order() == ["points", "reference SCL", "prediction"]
    assert dock.top_label.text() == "reference SCL"
    assert reference.renderer().opacity() == pytest.approx(0.3)
    assert prediction.renderer().opacity() == pytest.approx(1.0)

    dock.swap_button.click()
    assert _names_in_drawing_order() == ["points", "prediction", "reference SCL"]
    assert prediction.renderer().opacity() == pytest.approx(0.3)


def test_swap_follows_a_custom_layer_order(plugin, scl_layers):
    prediction, reference = scl_layers
    root = QgsProject.instance().layerTreeRoot()
    root.setHasCustomLayerOrder(True)
    root.setCustomLayerOrder([reference, root.customLayerOrder()[0], prediction])
    plugin.dock.swap_button.click()
    assert _names_in_drawing_order() == ["prediction", "reference SCL", "points"]
    assert plugin.dock.top_label.text() == "prediction"


def _evaluate_and_wait(dock) -> None:
    dock.evaluate_button.click()
    assert dock.is_evaluating()
    deadline = time.monotonic() + 60  # a guard against hanging, not a speed test
    while dock.is_evaluating() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert dock.evaluate_button.isEnabled()


def test_evaluate_button_shows_the_scores_and_adds_the_disagreement(plugin, scl_layers):
    dock = plugin.dock
    _evaluate_and_wait(dock)

    assert dock.status_label.text() == ""
    assert dock.scores == pytest.approx({"pixel_accuracy": 0.875, "miou": 0.775, "kappa": 0.75})
    assert (dock.accuracy_label.text(), dock.miou_label.text(), dock.kappa_label.text()) == ("87.5%", "77.5%", "0.750")
    disagreement = dock.disagreement_layer
    assert disagreement.isValid()
    assert QgsProject.instance().mapLayer(disagreement.id()) is disagreement
    assert _names_in_drawing_order()[0] == "Disagreement prediction / reference SCL"
    with rasterio.open(disagreement.source()) as src:
        assert src.read(1).tolist() == [[0, 0, 0, 0], [0, 4, 0, 0], [0, 0, 0, 0]]
    renderer = disagreement.renderer()
    assert renderer.type() == "paletted"
    assert {c.value: c.label for c in renderer.classes()}[4] == "Reference 4 Vegetation, predicted otherwise"


def test_evaluate_failure_is_shown_in_the_dock(plugin, tmp_path, qgis_new_project):
    write_scl(tmp_path / "prediction.tif", PREDICTION, PROFILE)
    write_scl(tmp_path / "reference.tif", np.full((3, 4), 15, np.uint8), PROFILE)
    QgsProject.instance().addMapLayers([
        QgsRasterLayer(str(tmp_path / "prediction.tif"), "prediction"),
        QgsRasterLayer(str(tmp_path / "reference.tif"), "reference SCL"),
    ])
    dock = plugin.dock
    _evaluate_and_wait(dock)
    assert dock.status_label.text().startswith("Evaluate failed: ")
    assert "15" in dock.status_label.text()
    assert dock.scores == {}
    assert dock.disagreement_layer is None


def test_dock_picks_the_layers_of_a_project_opened_later(plugin, scl_layers, tmp_path):
    project_file = tmp_path / "compare.qgz"
    assert QgsProject.instance().write(str(project_file))
    QgsProject.instance().clear()
    assert plugin.dock.prediction() is None

    assert QgsProject.instance().read(str(project_file))
    QCoreApplication.processEvents()
    assert plugin.dock.prediction().name() == "prediction"
    assert plugin.dock.reference().name() == "reference SCL"
    assert plugin.dock.top_label.text() == "prediction"


def test_set_up_runtime_action_shows_the_plan_before_installing(plugin, raster_menu, monkeypatch):
    from qgis.PyQt.QtWidgets import QMessageBox

    action = next(a for a in _scl_menu(raster_menu).actions() if a.objectName() == "scldeeplab_setup_runtime")
    assert action.text() == "Set up PyTorch runtime…" and not action.data()
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda parent, title, text: asked.append(text) or QMessageBox.StandardButton.No)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi: CPU wheels
    action.trigger()
    assert len(asked) == 1 and "Install PyTorch with CPU wheels (no nvidia-smi on PATH" in asked[0]
    assert str(QgsApplication.qgisSettingsDirPath()).rstrip("/") + "/scl_deeplab/pytorch-runtime" in asked[0]
    assert plugin.runtime_task is None and action.isEnabled()  # declined: nothing runs
