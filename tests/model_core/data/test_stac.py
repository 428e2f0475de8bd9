"""STAC search and COG reading against a catalogue served on 127.0.0.1 by the test itself."""

from __future__ import annotations

import json
import logging
import socket
import uuid

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds
from scl_deeplab.model_core.data import stac
from scl_deeplab.model_core.data.stac import DownloadConfig, SearchConfig, download
from scl_deeplab.model_core.errors import Canceled, CatalogueError, InputError
from scl_deeplab.tests.l2a_builders import ORIGIN, expected_tci, make_item, serve_stac
from scl_deeplab.tests.network import only_loopback
from scl_deeplab.tests.recording import RecordingProgress

# Columns 10-39 and rows 20-39 of the 10 m grid, given in lon/lat as a map canvas would.
CROP_UTM = (ORIGIN[0] + 100, ORIGIN[1] - 400, ORIGIN[0] + 400, ORIGIN[1] - 200)
CROP = transform_bounds("EPSG:32632", "EPSG:4326", *CROP_UTM)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Python-side guard: any connection outside 127.0.0.1 fails the test."""
    only_loopback(monkeypatch)
    monkeypatch.delenv(stac.TOKEN_ENV, raising=False)


def site_with(httpserver, *items, **kwargs):
    # A fresh path per test: GDAL caches what it read by URL for the whole process.
    return serve_stac(httpserver, uuid.uuid4().hex[:8], list(items), **kwargs)


def search_config(site, **overrides) -> SearchConfig:
    values = dict(extent=CROP, start_date="2023-07-01", end_date="2023-07-31", url=site.url, max_cloud_cover=50)
    values.update(overrides)
    return SearchConfig(**values)


def fast(**overrides) -> DownloadConfig:
    return DownloadConfig(**{"retries": 3, "backoff_s": 0.05, **overrides})


def test_tci_and_scl_cropped_to_the_extent(httpserver, tmp_path):
    site = site_with(httpserver, make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 12.5))
    progress = RecordingProgress()
    result = download(search_config(site), fast(source="TCI", resolution_m=10), tmp_path, progress=progress)
    arrays = site.arrays["S2B_32TQM_20230704_0_L2A"]
    with rasterio.open(tmp_path / "S2B_32TQM_20230704_0_L2A_TCI_10m.tif") as img, \
            rasterio.open(tmp_path / "S2B_32TQM_20230704_0_L2A_SCL_10m.tif") as labels:
        assert img.crs.to_epsg() == 32632 and img.transform == labels.transform
        left, bottom, right, top = img.bounds
        assert left <= CROP_UTM[0] and top >= CROP_UTM[3] and right >= CROP_UTM[2] and bottom <= CROP_UTM[1]
        col, row = round((left - ORIGIN[0]) / 10), round((ORIGIN[1] - top) / 10)
        assert np.array_equal(img.read(), arrays["visual"][:, row:row + img.height, col:col + img.width])
        scl10 = np.repeat(np.repeat(arrays["scl"], 2, 0), 2, 1)
        assert np.array_equal(labels.read(1), scl10[row:row + img.height, col:col + img.width])
        assert img.width < 40 and img.height < 30  # a crop, not the 60 x 60 tile
    assert any("2023-07-04  tile 32TQM  cloud 12.5 %" in m for m in progress.lines)
    manifest = json.loads(result.manifest.read_text())
    assert [e["id"] for e in manifest["items"]] == ["S2B_32TQM_20230704_0_L2A"]
    assert manifest["items"][0]["scl"] == "S2B_32TQM_20230704_0_L2A_SCL_10m.tif" and manifest["resolution_m"] == 10
    ranged = [r for r in site.requests if r[1].endswith("visual.tif") and r[2]]
    assert ranged and all(r[2].startswith("bytes=") for r in ranged)  # range requests, not whole files


def test_bands_apply_the_items_scale_and_offset(httpserver, tmp_path):
    site = site_with(httpserver, make_item("S2A_32TQM_20230710_0_L2A", "2023-07-10", 5.0, baseline="04.00"),
                     make_item("S2A_32TQM_20210710_0_L2A", "2023-07-11", 6.0, baseline="02.14"),
                     make_item("S2B_32TQM_20230712_0_L2A", "2023-07-12", 7.0, baseline="04.00", offset_applied=True))
    download(search_config(site), fast(source="BANDS", resolution_m=10), tmp_path)
    expected_offsets = (("S2A_32TQM_20230710_0_L2A", -1000), ("S2A_32TQM_20210710_0_L2A", 0),
                        ("S2B_32TQM_20230712_0_L2A", 0))  # Earth Search removed the offset already
    for item_id, offset in expected_offsets:
        with rasterio.open(tmp_path / f"{item_id}_BANDS_10m.tif") as img:
            col, row = round((img.bounds.left - ORIGIN[0]) / 10), round((ORIGIN[1] - img.bounds.top) / 10)
            window = np.s_[row:row + img.height, col:col + img.width]
            got = img.read()
        for i, key in enumerate(("red", "green", "blue")):
            assert np.array_equal(got[i], expected_tci(site.arrays[item_id][key][window], offset)), (item_id, key)


def test_copernicus_asset_names_and_https_alternates(httpserver, tmp_path):
    item_id = "S2A_MSIL2A_20230704T101559_N0509_R065_T32TQM_20230704T130000"
    site = site_with(httpserver, make_item(item_id, "2023-07-04", 3.0, cdse=True))
    download(search_config(site), fast(resolution_m=20), tmp_path)
    with rasterio.open(tmp_path / f"{item_id}_SCL_20m.tif") as labels:
        col, row = round((labels.bounds.left - ORIGIN[0]) / 20), round((ORIGIN[1] - labels.bounds.top) / 20)
        expected = site.arrays[item_id]["SCL_20m"][row:row + labels.height, col:col + labels.width]
        assert np.array_equal(labels.read(1), expected)
    assert {r[1].rsplit("/", 1)[1] for r in site.requests if "/cogs/" in r[1]} == {"TCI_10m.tif", "SCL_20m.tif"}


def test_coarser_resolution_averages_images_and_keeps_scl_codes(httpserver, tmp_path):
    site = site_with(httpserver, make_item("S2B_32TQM_20230714_0_L2A", "2023-07-14", 1.0))
    download(search_config(site), fast(resolution_m=60), tmp_path)
    arrays = site.arrays["S2B_32TQM_20230714_0_L2A"]
    with rasterio.open(tmp_path / "S2B_32TQM_20230714_0_L2A_TCI_60m.tif") as img, \
            rasterio.open(tmp_path / "S2B_32TQM_20230714_0_L2A_SCL_60m.tif") as labels:
        assert img.res == (60.0, 60.0)
        col, row = round((img.bounds.left - ORIGIN[0]) / 60), round((ORIGIN[1] - img.bounds.top) / 60)
        codes = labels.read(1)
        expected = arrays["scl"][1::3, 1::3][row:row + img.height, col:col + img.width]
        assert np.array_equal(codes, expected)
        blocks = arrays["visual"].reshape(3, 10, 6, 10, 6).mean(axis=(2, 4))
        means = blocks[:, row:row + img.height, col:col + img.width]
        # Read from the 20 m overview (2 x 2 means) and averaged 3 x 3: the 6 x 6 mean, give or take rounding.
        assert np.abs(img.read().astype(float) - means).max() <= 1.0
    assert any(r[1].endswith("visual.tif") for r in site.requests)


def test_resume_after_an_interrupted_download(httpserver, tmp_path):
    first, second = "S2B_32TQM_20230704_0_L2A", "S2A_32TQM_20230709_0_L2A"
    site = site_with(httpserver, make_item(first, "2023-07-04", 3.0), make_item(second, "2023-07-09", 4.0))
    (tmp_path / ".old.x.part.tif").write_bytes(b"left by a killed run")
    with pytest.raises(Canceled):
        download(search_config(site), fast(), tmp_path, progress=RecordingProgress(cancel_on=f"{second}: reading"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{first}_SCL_20m.qml", f"{first}_SCL_20m.tif", f"{first}_TCI_20m.tif", "manifest.json"]
    assert [e["id"] for e in json.loads((tmp_path / "manifest.json").read_text())["items"]] == [first]
    stamp = (tmp_path / f"{first}_TCI_20m.tif").stat().st_mtime_ns

    result = download(search_config(site), fast(), tmp_path)
    assert (result.downloaded, result.skipped) == (1, 1)
    assert (tmp_path / f"{first}_TCI_20m.tif").stat().st_mtime_ns == stamp
    assert (tmp_path / f"{second}_SCL_20m.tif").exists()
    assert sorted(e["id"] for e in json.loads(result.manifest.read_text())["items"]) == sorted([first, second])


def test_retries_a_busy_server(httpserver, tmp_path):
    item_id = "S2B_32TQM_20230704_0_L2A"
    site = site_with(httpserver, make_item(item_id, "2023-07-04", 3.0))
    prefix = site.url.rsplit("/", 1)[1]
    site.fail_next = {f"/{prefix}/search": 1, f"/{prefix}/cogs/{item_id}/scl.tif": 2}
    result = download(search_config(site), fast(), tmp_path)
    assert result.downloaded == 1
    assert site.fail_next == {f"/{prefix}/search": 0, f"/{prefix}/cogs/{item_id}/scl.tif": 0}
    with rasterio.open(tmp_path / f"{item_id}_SCL_20m.tif") as labels:
        assert labels.read(1).max() > 0


def test_an_unreadable_item_is_skipped_and_the_others_kept(httpserver, tmp_path):
    good, bad = "S2B_32TQM_20230704_0_L2A", "S2A_32TQM_20230709_0_L2A"
    site = site_with(httpserver, make_item(good, "2023-07-04", 3.0), make_item(bad, "2023-07-09", 4.0))
    prefix = site.url.rsplit("/", 1)[1]
    site.fail_next = {f"/{prefix}/cogs/{bad}/visual.tif": 10_000}  # busy for good
    progress = RecordingProgress()
    result = download(search_config(site), fast(retries=1), tmp_path, progress=progress)
    assert (result.downloaded, [e["id"] for e in result.items]) == (1, [good])
    assert any(m.startswith(f"Skipping {bad}: cannot read it") for m in progress.lines)
    assert not list(tmp_path.glob(f"{bad}*")) and not list(tmp_path.glob(".*part*"))


def test_no_items_says_what_to_change(httpserver, tmp_path):
    site = site_with(httpserver, make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 80.0))
    with pytest.raises(InputError, match=r"No items found .* cloud cover <= 10 %.*Widen the dates"):
        download(search_config(site, max_cloud_cover=10), fast(), tmp_path)
    assert not any(tmp_path.glob("*.tif"))


def test_unreachable_and_refusing_catalogues(httpserver, tmp_path, monkeypatch):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with pytest.raises(CatalogueError, match="Cannot reach .*Check the internet connection"):
        stac.search(SearchConfig(extent=CROP, start_date="2023-07-01", end_date="2023-07-31",
                                 url=f"http://127.0.0.1:{closed}/v1"), retries=1, backoff_s=0.05)
    site = site_with(httpserver, make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 3.0), auth="Bearer s3cret")
    with pytest.raises(CatalogueError, match=f"refused the request \\(HTTP 403\\).*{stac.TOKEN_ENV}"):
        download(search_config(site), fast(), tmp_path)


def test_token_from_the_environment_reaches_catalogue_and_assets_but_no_log(httpserver, tmp_path, monkeypatch,
                                                                            caplog):
    site = site_with(httpserver, make_item("S2B_32TQM_20230704_0_L2A", "2023-07-04", 3.0), auth="Bearer s3cret")
    monkeypatch.setenv(stac.TOKEN_ENV, "s3cret")
    progress = RecordingProgress()
    with caplog.at_level(logging.DEBUG):  # pystac-client logs each request's headers at DEBUG
        result = download(search_config(site), fast(), tmp_path, progress=progress)
    requests_logged = [r.getMessage() for r in caplog.records if r.name == stac.STAC_REQUEST_LOGGER]
    assert any("Authorization" in m for m in requests_logged)  # the header is logged, its token is not
    assert not any("s3cret" in r.getMessage() for r in caplog.records)
    assert result.downloaded == 1
    assert {r[3] for r in site.requests} == {"Bearer s3cret"}
    cog_requests = [r for r in site.requests if "/cogs/" in r[1]]
    assert cog_requests
    assert not any("s3cret" in m for m in progress.lines)
    assert "s3cret" not in result.manifest.read_text()


def test_empty_extent_and_reversed_dates_are_refused(tmp_path):
    with pytest.raises(InputError, match="is empty"):
        stac.wgs84_bbox((10.0, 46.0, 10.0, 46.1), "EPSG:4326")
    with pytest.raises(InputError, match="start date 2023-08-01 is after the end date"):
        stac.search(SearchConfig(extent=CROP, start_date="2023-08-01", end_date="2023-07-01",
                                 url="http://127.0.0.1:9/"))


def test_a_400_echoing_the_token_masks_it_and_does_not_say_try_again(httpserver, monkeypatch):
    monkeypatch.setenv(stac.TOKEN_ENV, "tok-9f8e7d")
    httpserver.expect_request("/").respond_with_data(
        '{"detail": "invalid filter for key=tok-9f8e7d (sent as token tok-9f8e7d)"}', status=400,
        content_type="application/json")
    with pytest.raises(CatalogueError) as caught:
        stac.search(SearchConfig(extent=CROP, start_date="2023-07-01", end_date="2023-07-31",
                                 url=httpserver.url_for("/")), retries=0)
    message = str(caught.value)
    assert "HTTP 400" in message and "invalid filter for key=***" in message
    assert "tok-9f8e7d" not in message and "try again" not in message.lower()


@pytest.mark.parametrize("cdse", [False, True])
def test_a_band_list_gives_named_reflectance_with_the_offset(httpserver, tmp_path, cdse):
    """Issue 18: B04,B03,B02,B8A,B11,B12 at 20 m: 10 m bands averaged, 20 m ones as they are, offset applied."""
    item_id = "S2A_32TQM_20230710_0_L2A"
    site = site_with(httpserver, make_item(item_id, "2023-07-10", 5.0, baseline="04.00", cdse=cdse, nir_swir=True))
    bands = ("B04", "B03", "B02", "B8A", "B11", "B12")
    result = download(search_config(site), fast(resolution_m=20, bands=bands), tmp_path)
    image = tmp_path / f"{item_id}_BANDS-B04B03B02B8AB11B12_20m.tif"
    with rasterio.open(image) as img:
        assert (img.count, img.dtypes[0], img.nodata, img.descriptions) == (6, "uint16", 0.0, bands)
        col, row = round((img.bounds.left - ORIGIN[0]) / 20), round((ORIGIN[1] - img.bounds.top) / 20)
        got = img.read()
    arrays = site.arrays[item_id]
    keys = {"B04": "B04_10m", "B8A": "B8A_20m"} if cdse else {"B04": "red", "B8A": "nir08"}
    fine = arrays[keys["B04"]].astype(np.float64)
    mean = fine.reshape(30, 2, 30, 2).mean(axis=(1, 3))  # all pixels valid (DN 1-5999)
    expected_red = np.clip(np.rint(mean - 1000), 1, None)[row:row + img.height, col:col + img.width]
    assert np.abs(got[0].astype(np.int64) - expected_red).max() <= 1  # the mean of DN, then the offset
    expected_nir = np.clip(arrays[keys["B8A"]].astype(np.int64) - 1000, 1, None)[row:row + img.height,
                                                                                  col:col + img.width]
    assert np.array_equal(got[3], expected_nir)
    assert result.items[0]["source"] == ",".join(bands)
    again = download(search_config(site), fast(resolution_m=20, bands=bands), tmp_path)
    assert again.downloaded == 0 and again.skipped == 1  # complete files are recognised


def test_a_band_list_naming_a_band_the_item_lacks_skips_it_naming_its_bands(httpserver, tmp_path):
    site = site_with(httpserver, make_item("S2A_32TQM_20230710_0_L2A", "2023-07-10", 5.0))
    progress = RecordingProgress()
    with pytest.raises(CatalogueError):
        download(search_config(site), fast(resolution_m=20, bands=("B04", "B8A")), tmp_path, progress=progress)
    assert any("has no B8A asset (its bands: B02, B03, B04)" in m for m in progress.lines)
    assert not list(tmp_path.glob("*.tif"))
