"""Writes /tmp/shot/project.qgz: the sample scene's true colour under its styled SCL (or a prediction)."""
import sys
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer

app = QgsApplication([], False)
app.initQgis()
folder = sys.argv[1]
layers = sys.argv[2:]  # path=name pairs, top first
project = QgsProject.instance()
for item in reversed(layers):
    path, name = item.split("=", 1)
    layer = QgsRasterLayer(path, name)
    assert layer.isValid(), path
    project.addMapLayer(layer)  # the last added ends on top
project.setCrs(project.mapLayers()[next(iter(project.mapLayers()))].crs())
assert project.write(f"{folder}/project.qgz")
print("wrote", f"{folder}/project.qgz", [l.name() for l in project.layerTreeRoot().layerOrder()])
app.exitQgis()
