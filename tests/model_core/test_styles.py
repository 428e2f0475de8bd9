"""The QML styles: the shipped scl.qml, the disagreement and confidence styles, and their sidecar files."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from scl_deeplab.model_core import scl, styles

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def _root(qml: str) -> ET.Element:
    return ET.fromstring(qml.split("\n", 1)[1])  # past the DOCTYPE line


def test_shipped_qml_is_generated_from_the_table():
    assert (RESOURCES / "scl.qml").read_text(encoding="utf-8") == styles.scl_qml()


def test_qml_palette_entries_match_codes_and_colours():
    entries = _root(styles.scl_qml()).findall(".//paletteEntry")
    assert [(int(e.get("value")), e.get("color")) for e in entries] == [(c.code, c.color) for c in scl.SCL_CLASSES]
    assert entries[0].get("alpha") == "0"
    assert [e.get("alpha") for e in entries[1:]] == ["255"] * scl.NUM_CLASSES
    assert entries[6].get("label") == "6 Water"


def test_disagreement_style_colours_the_learned_classes_by_reference_on_the_scl_renderer():
    root = _root(styles.disagreement_qml())
    entries = root.findall(".//paletteEntry")
    assert [(int(e.get("value")), e.get("color")) for e in entries] == [(c.code, c.color) for c in scl.LEARNED]
    assert entries[5].get("label") == "Reference 6 Water, predicted otherwise"
    assert {e.get("alpha") for e in entries} == {"255"}  # agreement (0) has no entry: transparent
    renderer = root.find("./pipe/rasterrenderer")
    assert renderer.attrib == _root(styles.scl_qml()).find("./pipe/rasterrenderer").attrib


def test_confidence_style_is_a_grey_ramp_from_0_to_100():
    renderer = _root(styles.confidence_qml()).find("./pipe/rasterrenderer")
    assert (renderer.get("type"), renderer.get("grayBand"), renderer.get("gradient")) == (
        "singlebandgray", "1", "BlackToWhite")
    assert (renderer.findtext("./contrastEnhancement/minValue"), renderer.findtext("./contrastEnhancement/maxValue")) \
        == ("0", "100")


def test_names_with_markup_characters_are_escaped():
    assert 'label="a &lt;b&gt; &amp; c"' in styles._paletted([(scl.SCL_CLASSES[4], 255, "a <b> & c")])


def test_write_style_puts_the_sidecar_beside_the_raster(tmp_path):
    raster = tmp_path / "pred.tif"
    assert styles.write_style(raster) == tmp_path / "pred.qml"
    assert (tmp_path / "pred.qml").read_text(encoding="utf-8") == styles.scl_qml()
    styles.write_style(tmp_path / "conf.tif", styles.confidence_qml())
    assert (tmp_path / "conf.qml").read_text(encoding="utf-8") == styles.confidence_qml()
