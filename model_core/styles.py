"""Every QGIS style (QML) the plugin writes: SCL, disagreement and confidence rasters, and their sidecar files.

``resources/scl.qml`` is ``scl_qml()``; a test regenerates it and compares.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from . import scl
from .atomic import atomic_file


def qml_document(renderer: str) -> str:
    """A complete QML file around one ``<rasterrenderer>`` element (already indented by 4 spaces)."""
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.22" styleCategories="AllStyleCategories">\n'
        "  <pipe>\n"
        f"{renderer}"
        '    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>\n'
        '    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>\n'
        '    <rasterresampler maxOversampling="2"/>\n'
        "  </pipe>\n"
        "  <blendMode>0</blendMode>\n"
        "</qgis>\n"
    )


def _paletted(entries: list[tuple[scl.SclClass, int, str]]) -> str:
    """A paletted renderer of band 1 with one entry per (class, alpha, label)."""
    lines = "\n".join(
        f'        <paletteEntry value="{c.code}" color="{c.color}" alpha="{alpha}" label="{escape(label)}"/>'
        for c, alpha, label in entries
    )
    return qml_document(
        '    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">\n'
        "      <rasterTransparency/>\n"
        "      <colorPalette>\n"
        f"{lines}\n"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
    )


def scl_qml() -> str:
    """The paletted style for SCL rasters: every code in its legend colour, no data transparent."""
    return _paletted([(c, 0 if c.code == scl.NO_DATA else 255, f"{c.code} {c.name}") for c in scl.SCL_CLASSES])


def disagreement_qml() -> str:
    """The style for disagreement rasters: coloured by the reference class; 0 (agreement) has no entry."""
    return _paletted([(c, 255, f"Reference {c.code} {c.name}, predicted otherwise") for c in scl.LEARNED])


def confidence_qml() -> str:
    """A grey-ramp style for confidence rasters (0 % black, 100 % white, 255 transparent)."""
    return qml_document(
        '    <rasterrenderer type="singlebandgray" grayBand="1" gradient="BlackToWhite" opacity="1" alphaBand="-1">\n'
        "      <rasterTransparency/>\n"
        "      <contrastEnhancement>\n"
        "        <minValue>0</minValue>\n"
        "        <maxValue>100</maxValue>\n"
        "        <algorithm>StretchToMinimumMaximum</algorithm>\n"
        "      </contrastEnhancement>\n"
        "    </rasterrenderer>\n"
    )


def write_style(raster_path: Path | str, qml: str | None = None) -> Path:
    """Write ``<raster>.qml`` beside a raster (``qml``, the SCL style by default), so QGIS styles it when loaded."""
    qml_path = Path(raster_path).with_suffix(".qml")
    with atomic_file(qml_path) as tmp:
        tmp.write_text(scl_qml() if qml is None else qml, encoding="utf-8")
    return qml_path
