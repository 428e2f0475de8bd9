"""The plugin's sources keep clear of what PyQt6 (QGIS 4) removed, so `supportsQt6=yes` stays true."""

from __future__ import annotations

import ast
import configparser
import os
from pathlib import Path

from qgis.PyQt import QtCore, QtGui, QtNetwork, QtWidgets

REPO = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".git", ".venv", "tests", "__pycache__", "dist", "demo_output"}
QT_MODULES = (QtCore, QtGui, QtWidgets, QtNetwork)
MOVED_TO_QTGUI = {"QAction", "QActionGroup", "QShortcut", "QUndoCommand", "QUndoGroup", "QUndoStack",
                  "QFileSystemModel"}
REMOVED_CLASSES = {"QVariant", "QRegExp", "QRegExpValidator", "QDesktopWidget", "QGLWidget", "QMatrix", "QSound"}


def qt_class(name: str) -> type | None:
    """The Qt class ``name`` as this QGIS's PyQt has it, or None when it is not a Qt class."""
    if not name.startswith("Q") or name.startswith(("Qgs", "Qgis")):
        return None
    return next((getattr(module, name) for module in QT_MODULES if hasattr(module, name)), None)


def is_unscoped_enum(node: ast.Attribute, parent: ast.AST | None) -> bool:
    """``Qt.AlignLeft`` and ``QMessageBox.Yes``: a Qt enum member written without its enum's name."""
    if not isinstance(node.value, ast.Name) or not node.attr[:1].isupper():
        return False
    if isinstance(parent, ast.Attribute) and parent.value is node:
        return False  # Qt.AlignmentFlag in Qt.AlignmentFlag.AlignLeft
    cls = qt_class(node.value.id)
    if cls is None:
        # QGIS classes keep their unscoped enum names under PyQt6 (QGIS adds them back).
        return False
    return not isinstance(getattr(cls, node.attr, None), type)


def in_import_error_fallback(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """True inside ``except ImportError:``, where a Qt 5 location is the fallback of a Qt 6 one."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.ExceptHandler) and isinstance(node.type, ast.Name) and node.type.id == "ImportError":
            return True
    return False


def qt6_problems(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for each construct PyQt6 removed, or an unscoped Qt enum, in ``source``."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found: list[tuple[int, str]] = []

    def report(node: ast.AST, what: str) -> None:
        found.append((node.lineno, f"{filename}:{node.lineno}: {what}"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in {"PyQt4", "PyQt5", "PyQt6", "sip"}:
                    report(node, f"import {alias.name}: import Qt through qgis.PyQt")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module.split(".")[0] in {"PyQt4", "PyQt5", "PyQt6", "sip"}:
                report(node, f"from {module} import: import Qt through qgis.PyQt")
            if module == "qgis.PyQt.QtWidgets" and names & MOVED_TO_QTGUI and not in_import_error_fallback(node,
                                                                                                           parents):
                report(node, f"{', '.join(sorted(names & MOVED_TO_QTGUI))} from QtWidgets: Qt 6 has it in QtGui")
            for name in sorted(names & REMOVED_CLASSES):
                report(node, f"{name}: gone in PyQt6")
        elif isinstance(node, ast.Name) and node.id in REMOVED_CLASSES:
            report(node, f"{node.id}: gone in PyQt6")
        elif isinstance(node, ast.Attribute):
            if node.attr in {"exec_", "print_"}:
                report(node, f"{node.attr}(): gone in PyQt6, use {node.attr[:-1]}()")
            elif is_unscoped_enum(node, parents.get(node)):
                report(node, f"{node.value.id}.{node.attr}: write the enum's name too (PyQt6 enums are scoped)")
    return [what for _, what in sorted(found, key=lambda item: item[0])]


def plugin_sources() -> list[Path]:
    """Every Python file of the plugin and its scripts, tests aside."""
    sources = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        sources += [Path(folder) / name for name in sorted(files) if name.endswith(".py")]
    return sources


def test_the_scan_finds_each_construct_pyqt6_removed():
    source = """
from PyQt5.QtCore import Qt
import sip
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QToolButton
from qgis.core import QgsMapLayerProxyModel
dialog.exec_()
if value.type() == QVariant.Int: pass
box = QMessageBox.Yes
align = Qt.AlignLeft
scoped = Qt.AlignmentFlag.AlignLeft
mode = QToolButton.ToolButtonPopupMode.InstantPopup
raster = QgsMapLayerProxyModel.RasterLayer
dialog.exec()
try:
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction
"""
    found = qt6_problems(source)
    assert [line.split(": ", 1)[0] for line in found] == [
        "<source>:2", "<source>:3", "<source>:4", "<source>:5", "<source>:7", "<source>:8", "<source>:8",
        "<source>:9", "<source>:10"]
    assert "<source>:5: QAction from QtWidgets: Qt 6 has it in QtGui" in found
    assert "<source>:7: exec_(): gone in PyQt6, use exec()" in found
    assert "<source>:9: QMessageBox.Yes: write the enum's name too (PyQt6 enums are scoped)" in found
    assert "<source>:10: Qt.AlignLeft: write the enum's name too (PyQt6 enums are scoped)" in found


def test_plugin_sources_are_safe_for_pyqt6():
    sources = plugin_sources()
    names = {path.relative_to(REPO).as_posix() for path in sources}
    assert {"__init__.py", "plugin/plugin.py", "plugin/compare_dock.py", "algorithms/base.py",
            "provider/provider.py"} <= names
    assert not any(name.startswith(("tests/", ".venv/")) for name in names)
    problems = [problem for path in sources
                for problem in qt6_problems(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())]
    assert problems == []


def test_metadata_declares_qt6_and_qgis_4():
    metadata = configparser.ConfigParser(interpolation=None)
    metadata.read(REPO / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["supportsQt6"] == "yes"
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["qgisMaximumVersion"] == "4.99"
