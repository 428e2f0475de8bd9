"""Run by QGIS (--code): show the Processing toolbox on SCL DeepLab, zoom to the layers, save a screenshot."""
import os
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QApplication, QDockWidget, QTreeView
from qgis.utils import iface

OUT = os.environ.get("SHOT_OUT", "/tmp/shot/screen.png")


def arrange():
    window = iface.mainWindow()
    window.setGeometry(0, 0, int(os.environ.get("SHOT_W", "1440")), int(os.environ.get("SHOT_H", "900")))
    browser = window.findChild(QDockWidget, "Browser")
    if browser is not None:
        browser.hide()
    if os.environ.get("SHOT_DOCK") == "1":  # the compare dock, left above the Layers panel
        dock = window.findChild(QDockWidget, "SclDeepLabCompareDock")
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        dock.show()
        if os.environ.get("SHOT_EVALUATE") == "1":
            dock.opacity_slider.setValue(60)
            dock.evaluate_button.click()
    toolbox = window.findChild(QDockWidget, "ProcessingToolbox")
    toolbox.show()
    toolbox.raise_()
    tree = toolbox.findChild(QTreeView)
    model = tree.model()
    for row in range(model.rowCount()):
        index = model.index(row, 0)
        if model.data(index) == "SCL DeepLab":
            tree.expand(index)
            for child in range(model.rowCount(index)):
                tree.expand(model.index(child, 0, index))
            tree.scrollTo(index, QTreeView.ScrollHint.PositionAtTop)
            tree.setCurrentIndex(index)
        else:
            tree.collapse(index)
    iface.mapCanvas().zoomToFullExtent()
    iface.mapCanvas().refresh()
    QTimer.singleShot(6000, shoot)


def shoot():
    QApplication.primaryScreen().grabWindow(0).save(OUT)
    print("screenshot saved", OUT, flush=True)


QTimer.singleShot(8000, arrange)
