"""scldeeplab:downloadl2a through Processing and through the qgis_process wrapper, against 127.0.0.1."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from scl_deeplab.model_core import scl
from scl_deeplab.tests.l2a_builders import ORIGIN, make_item, serve_stac
from scl_deeplab.tests.recording import RecordingFeedback

LEFT, BOTTOM, RIGHT, TOP = transform_bounds(
    "EPSG:32632", "EPSG:4326", ORIGIN[0] + 100, ORIGIN[1] - 400, ORIGIN[0] + 400, ORIGIN[1] - 200)
EXTENT = f"{LEFT},{RIGHT},{BOTTOM},{TOP} [EPSG:4326]"


def params(site, folder: Path, **overrides) -> dict:
    values = {
        "STAC_URL": site.url, "COLLECTION": "sentinel-2-l2a", "EXTENT": EXTENT,
        "START_DATE": "2023-07-01", "END_DATE": "2023-07-31", "MAX_CLOUD_COVER": 30, "MAX_ITEMS": 5,
        "SOURCE": 0, "RESOLUTION": "20", "OUTPUT_FOLDER": str(folder),
    }
    values.update(overrides)
    return values


def test_downloadl2a_writes_items_and_manifest(provider, httpserver, tmp_path):
    import processing

    site = serve_stac(httpserver, uuid.uuid4().hex[:8], [
        make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 10.0),
        make_item("S2A_32TQM_20230709_0_L2A", "2023-07-09", 70.0),  # too cloudy
    ])
    result = processing.run("scldeeplab:downloadl2a", params(site, tmp_path / "out"))
    assert result["ITEM_COUNT"] == 1
    manifest = json.loads(Path(result["OUTPUT_MANIFEST"]).read_text())
    entry = manifest["items"][0]
    assert (entry["id"], entry["resolution_m"], entry["source"]) == ("S2B_32TQM_20230704_0_L2A", 20, "TCI")
    with rasterio.open(tmp_path / "out" / entry["image"]) as img, rasterio.open(tmp_path / "out" / entry["scl"]) as lab:
        assert img.res == (20.0, 20.0) and (img.width, img.height) == (entry["width"], entry["height"])
        col, row = round((lab.bounds.left - ORIGIN[0]) / 20), round((ORIGIN[1] - lab.bounds.top) / 20)
        codes = site.arrays[entry["id"]]["scl"][row:row + lab.height, col:col + lab.width]
        assert np.array_equal(lab.read(1), codes)
        assert lab.colormap(1)[9][:3] == scl.BY_CODE[9].rgb
    assert (tmp_path / "out" / entry["scl"]).with_suffix(".qml").exists()


def test_downloadl2a_no_items_is_a_clear_error(provider, httpserver, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    site = serve_stac(httpserver, uuid.uuid4().hex[:8], [make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 90.0)])
    with pytest.raises(QgsProcessingException, match="No items found"):
        processing.run("scldeeplab:downloadl2a", params(site, tmp_path / "out"))


def test_downloadl2a_through_qgis_process(qgis_process_json, httpserver, tmp_path):
    site = serve_stac(httpserver, uuid.uuid4().hex[:8], [make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 10.0)])
    results = qgis_process_json("scldeeplab:downloadl2a", **params(site, tmp_path / "out", SOURCE=1, RESOLUTION=60))
    assert int(results["ITEM_COUNT"]) == 1
    with rasterio.open(tmp_path / "out" / "S2B_32TQM_20230704_0_L2A_BANDS_60m.tif") as img:
        assert img.res == (60.0, 60.0) and img.count == 3 and img.read().max() > 0


@pytest.fixture()
def basic_auth_config(qgis_app):
    """A Basic authentication configuration in the test profile's QGIS authentication database."""
    from qgis.core import QgsApplication, QgsAuthMethodConfig

    manager = QgsApplication.authManager()
    assert manager.setMasterPassword("scl-deeplab-tests", True)
    config = QgsAuthMethodConfig("Basic")
    config.setName("scl-deeplab test catalogue")
    config.setConfig("username", "reader")
    config.setConfig("password", "pa55")
    ok, config = manager.storeAuthenticationConfig(config)
    assert ok
    yield config.id()
    manager.removeAuthenticationConfig(config.id())


def test_downloadl2a_takes_credentials_from_the_auth_manager(provider, httpserver, tmp_path, basic_auth_config,
                                                              caplog, capfd):
    import processing
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException

    basic = "Basic cmVhZGVyOnBhNTU="  # reader:pa55
    site = serve_stac(httpserver, uuid.uuid4().hex[:8], [make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 10.0)],
                      auth=basic)
    with pytest.raises(QgsProcessingException, match="refused the request \\(HTTP 403\\)"):
        processing.run("scldeeplab:downloadl2a", params(site, tmp_path / "none"))

    # Every channel the secret could leak through: the feedback's, Python logging, the QGIS log, stdout/stderr.
    # (The plugin's own loggers down to DEBUG; pystac-client logs request headers at DEBUG, so others from INFO.)
    caplog.set_level("INFO")
    caplog.set_level("DEBUG", logger="scl_deeplab")
    qgis_log: list[str] = []
    QgsApplication.messageLog().messageReceived.connect(lambda message, *_: qgis_log.append(message))
    feedback = RecordingFeedback()
    result = processing.run("scldeeplab:downloadl2a", params(site, tmp_path / "out", AUTH_CONFIG=basic_auth_config),
                            context=QgsProcessingContext(), feedback=feedback)
    assert result["ITEM_COUNT"] == 1
    assert {r[3] for r in site.requests if "/cogs/" in r[1]} == {basic}
    captured = capfd.readouterr()
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").iterdir() if p.suffix != ".tif")
    assert feedback.infos
    for where, text in {"feedback": feedback.text, "logging": caplog.text, "QGIS log": "\n".join(qgis_log),
                        "stdout": captured.out, "stderr": captured.err, "output files": written}.items():
        assert "pa55" not in text and basic not in text and basic.split()[1] not in text, where


def test_downloadl2a_band_list_through_qgis_process(qgis_process_json, httpserver, tmp_path):
    """Issue 18: BAND_LIST "SCL bands" writes six named reflectance bands per item."""
    site = serve_stac(httpserver, uuid.uuid4().hex[:8],
                      [make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 10.0, nir_swir=True)])
    results = qgis_process_json("scldeeplab:downloadl2a",
                                **params(site, tmp_path / "out", RESOLUTION=20, BAND_LIST="SCL bands"))
    assert int(results["ITEM_COUNT"]) == 1
    with rasterio.open(tmp_path / "out" / "S2B_32TQM_20230704_0_L2A_BANDS-B02B03B04B8AB11B12_20m.tif") as img:
        assert img.descriptions == ("B02", "B03", "B04", "B8A", "B11", "B12") and img.dtypes[0] == "uint16"
        assert img.res == (20.0, 20.0) and img.read().min() >= 1  # all valid: reflectance at least 1


def test_downloadl2a_refuses_an_unknown_band_before_searching(provider, httpserver, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    site = serve_stac(httpserver, uuid.uuid4().hex[:8], [make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 10.0)])
    with pytest.raises(QgsProcessingException, match="names B14, not L2A bands"):
        processing.run("scldeeplab:downloadl2a", params(site, tmp_path / "out", BAND_LIST="B04,B14"))
    assert not site.requests and not (tmp_path / "out").exists()
