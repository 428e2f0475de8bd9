"""Menu entries: one action per algorithm of the provider, each opening its Processing dialog."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtWidgets import QMenu

from ..algorithms.base import GROUPS
from .qt_compat import QAction


def open_algorithm_dialog(algorithm_id: str) -> None:
    """Open the Processing dialog of ``algorithm_id``, as a double click in the toolbox does."""
    # The Processing plugin is loaded by QGIS desktop before any other plugin's initGui.
    import processing

    processing.execAlgorithmDialog(algorithm_id)


def toolbox_order(provider: QgsProcessingProvider) -> list[QgsProcessingAlgorithm]:
    """The provider's algorithms in workflow order: data, training, prediction, evaluation."""
    groups = list(GROUPS)

    def key(algorithm: QgsProcessingAlgorithm) -> tuple[int, str]:
        group = algorithm.groupId()
        rank = groups.index(group) if group in groups else len(groups)
        return rank, algorithm.displayName().lower()

    return sorted(provider.algorithms(), key=key)


def add_algorithm_actions(menu: QMenu, provider: QgsProcessingProvider) -> list[QAction]:
    """Add a titled section per group and an action per algorithm to ``menu``; return the actions."""
    actions = []
    group = None
    for algorithm in toolbox_order(provider):
        if algorithm.groupId() != group:
            group = algorithm.groupId()
            menu.addSection(algorithm.group())
        action = QAction(algorithm.icon(), algorithm.displayName() + "…", menu)
        action.setObjectName(f"scldeeplab_{algorithm.name()}")
        action.setData(algorithm.id())
        action.setStatusTip(algorithm.shortDescription() or algorithm.displayName())
        # Bind the id now: `algorithm` is reused by the loop and `triggered` passes `checked`.
        action.triggered.connect(lambda _checked=False, alg_id=algorithm.id(): open_algorithm_dialog(alg_id))
        menu.addAction(action)
        actions.append(action)
    return actions
