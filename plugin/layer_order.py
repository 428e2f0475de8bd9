"""Which of two layers QGIS draws on top, and moving one above the other in the layer tree."""

from __future__ import annotations

from qgis.core import QgsLayerTree, QgsMapLayer


def is_drawn_above(root: QgsLayerTree, upper: QgsMapLayer, lower: QgsMapLayer) -> bool | None:
    """True if ``upper`` is drawn above ``lower``; None when either is not in the layer tree."""
    order = [layer.id() for layer in root.layerOrder()]
    if upper.id() not in order or lower.id() not in order:
        return None
    return order.index(upper.id()) < order.index(lower.id())


def move_above(root: QgsLayerTree, upper: QgsMapLayer, lower: QgsMapLayer) -> None:
    """Draw ``upper`` directly above ``lower``, leaving every other layer where it was.

    With a custom rendering order (the "Layer Order" panel) that order is changed; otherwise
    ``upper``'s node moves next to ``lower``'s in the tree, into ``lower``'s group if need be.
    """
    if is_drawn_above(root, upper, lower) is not False:
        return
    if root.hasCustomLayerOrder():
        order = [layer for layer in root.customLayerOrder() if layer.id() != upper.id()]
        position = [layer.id() for layer in order].index(lower.id())
        root.setCustomLayerOrder(order[:position] + [upper] + order[position:])
        return
    upper_node = root.findLayer(upper.id())
    lower_node = root.findLayer(lower.id())
    parent = lower_node.parent()
    position = next(
        i for i, child in enumerate(parent.children())
        if QgsLayerTree.isLayer(child) and child.layerId() == lower.id()
    )
    # Clone, insert, remove: what QGIS's own "move to top" does; the clone keeps visibility and name.
    parent.insertChildNode(position, upper_node.clone())
    upper_node.parent().removeChildNode(upper_node)
