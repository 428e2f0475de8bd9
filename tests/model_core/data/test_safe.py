"""Reading L2A products: layouts, baselines, radiometry, grids and crops, pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from scl_deeplab.model_core import styles
from scl_deeplab.model_core.data import safe
from scl_deeplab.model_core.data.safe import PrepareConfig, prepare_l2a
from scl_deeplab.model_core.errors import Canceled, GridError, InputError, MaskCodeError
from scl_deeplab.tests.l2a_builders import ORIGIN, expected_tci, make_safe, mtd_xml, write_jp2, zip_safe
from scl_deeplab.tests.recording import RecordingProgress


@pytest.mark.parametrize("baseline", ["02.06", "02.14", "04.00"])
def test_metadata_of_each_generation(baseline):
    radiometry = safe.parse_metadata(mtd_xml(baseline).encode())
    assert radiometry.baseline == baseline
    assert radiometry.quantification == 10000
    if baseline == "04.00":
        assert [radiometry.offset(b) for b in ("B02", "B03", "B04", "B08")] == [-1000, -1100, -1200, -1000]
    else:
        assert radiometry.offsets == {} and radiometry.offset("B04") == 0


def test_baseline_0400_without_offsets_is_refused():
    with pytest.raises(InputError, match="baseline 04.00 .* no BOA_ADD_OFFSET"):
        safe.parse_metadata(mtd_xml("04.00", offsets=False).encode(), product_name="P")


def test_tci_rule_matches_integer_arithmetic():
    dn = np.arange(0, 12000, dtype=np.uint16)
    for offset in (0, -1000, -1100):
        assert np.array_equal(safe.tci_from_dn(dn, offset, 10000), expected_tci(dn, offset))
    edges = np.array([1000, 1001, 2250, 3500, 3510, 65535])
    assert safe.tci_from_dn(edges, -1000, 10000).tolist() == [0, 1, 128, 255, 255, 255]


@pytest.mark.parametrize(
    ("baseline", "layout", "res"),
    [("04.00", "folder", 20), ("04.00", "zip", 60), ("02.14", "zip", 10), ("02.06", "folder", 20)],
)
def test_bands_become_tci_pixel_by_pixel(tmp_path, baseline, layout, res):
    product = make_safe(tmp_path / "in", baseline)
    source = zip_safe(product) if layout == "zip" else product.path
    out = prepare_l2a(source, tmp_path / "rgb.tif", tmp_path / "scl.tif",
                      PrepareConfig(source="BANDS", resolution_m=res, rows_per_band=7))
    with rasterio.open(out.image) as img, rasterio.open(out.scl) as labels:
        rgb, codes = img.read(), labels.read(1)
        assert img.crs.to_epsg() == labels.crs.to_epsg() == 32632
        assert img.transform == labels.transform == rasterio.transform.from_origin(*ORIGIN, res, res)
        assert img.dtypes == ("uint8",) * 3 and labels.colormap(1)[9] == (255, 255, 255, 255)
    for i, band in enumerate(("B04", "B03", "B02")):
        expected = expected_tci(product.arrays[(band, res)], product.offsets.get(band, 0))
        assert np.array_equal(rgb[i], expected), band
    scl_res = 20 if res == 10 else res
    source_scl = product.arrays[("SCL", scl_res)]
    expected_scl = np.repeat(np.repeat(source_scl, 2, 0), 2, 1) if res == 10 else source_scl
    assert np.array_equal(codes, expected_scl)
    assert out.baseline == baseline and (tmp_path / "scl.qml").read_text() == styles.scl_qml()


def test_offset_is_what_changes_between_baselines(tmp_path):
    """The same DN give darker true colour from 04.00 on: the offset is applied, not the old rule."""
    old = prepare_l2a(make_safe(tmp_path / "a", "02.14", seed=3).path, tmp_path / "a.tif", tmp_path / "a_scl.tif",
                      PrepareConfig(source="BANDS", resolution_m=60))
    new = prepare_l2a(make_safe(tmp_path / "b", "04.00", seed=3).path, tmp_path / "b.tif", tmp_path / "b_scl.tif",
                      PrepareConfig(source="BANDS", resolution_m=60))
    with rasterio.open(old.image) as a, rasterio.open(new.image) as b:
        red_old, red_new = a.read(1).astype(int), b.read(1).astype(int)
    assert red_old[0, 1] == 102 and red_new[0, 1] == 0  # DN 1000: reflectance 0.1 before, below 0 after
    unsaturated = (red_old > 0) & (red_old < 255)
    assert (red_new <= red_old).all() and (red_new < red_old)[unsaturated].all()


def test_tci_source_reads_the_products_tci(tmp_path):
    product = make_safe(tmp_path, "04.00")
    out = prepare_l2a(product.path / "MTD_MSIL2A.xml", tmp_path / "rgb.tif", tmp_path / "scl.tif",
                      PrepareConfig(source="TCI", resolution_m=10))
    with rasterio.open(out.image) as img:
        assert np.array_equal(img.read(), product.arrays[("TCI", 10)])
    assert (out.width, out.height, out.resolution_m) == (60, 60, 10)


def test_zip_is_read_in_place(tmp_path):
    product = make_safe(tmp_path / "in", "04.00")
    archive = zip_safe(product)
    import shutil

    shutil.rmtree(product.path)
    out = prepare_l2a(archive, tmp_path / "out" / "rgb.tif", tmp_path / "out" / "scl.tif", PrepareConfig())
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [archive.name]
    with rasterio.open(out.image) as img:
        assert np.array_equal(img.read(), product.arrays[("TCI", 20)])


def test_extent_crops_both_outputs_in_any_crs(tmp_path):
    product = make_safe(tmp_path, "04.00")
    left, top = ORIGIN[0] + 100, ORIGIN[1] - 200  # 10 m grid: columns 10.., rows 20..
    extent = (left, top - 150, left + 210, top)  # 15 rows x 21 columns, the last partly covered
    out = prepare_l2a(product.path, tmp_path / "rgb.tif", tmp_path / "scl.tif",
                      PrepareConfig(source="BANDS", resolution_m=10, extent=extent, extent_crs="EPSG:32632"))
    with rasterio.open(out.image) as img, rasterio.open(out.scl) as labels:
        assert (img.width, img.height) == (labels.width, labels.height) == (21, 15)
        assert img.bounds.left == left and img.bounds.top == top
        red, codes = img.read(1), labels.read(1)
    assert np.array_equal(red, expected_tci(product.arrays[("B04", 10)], -1200)[20:35, 10:31])
    scl10 = np.repeat(np.repeat(product.arrays[("SCL", 20)], 2, 0), 2, 1)
    assert np.array_equal(codes, scl10[20:35, 10:31])

    lonlat = rasterio.warp.transform_bounds("EPSG:32632", "EPSG:4326", *extent)
    again = prepare_l2a(product.path, tmp_path / "rgb2.tif", tmp_path / "scl2.tif",
                        PrepareConfig(resolution_m=20, extent=lonlat, extent_crs="EPSG:4326"))
    with rasterio.open(again.scl) as labels:
        left_b, bottom_b, right_b, top_b = labels.bounds
    # The lon/lat box, a little larger once projected, still snaps to whole 20 m pixels around the extent.
    assert left_b <= extent[0] < left_b + 40 and top_b - 40 < extent[3] <= top_b
    assert right_b >= extent[2] and bottom_b <= extent[1]


def test_extent_outside_the_tile_writes_nothing(tmp_path):
    product = make_safe(tmp_path, "02.14", resolutions=(60,))
    with pytest.raises(GridError, match="does not overlap"):
        prepare_l2a(product.path, tmp_path / "rgb.tif", tmp_path / "scl.tif",
                    PrepareConfig(resolution_m=60, extent=(0, 0, 100, 100)))
    assert not any(tmp_path.glob("*.tif"))


def test_scl_from_20m_when_60m_scl_is_missing_takes_centre_pixels(tmp_path):
    product = make_safe(tmp_path, "04.00", resolutions=(60,), scl_resolutions=(20,))
    out = prepare_l2a(product.path, tmp_path / "rgb.tif", tmp_path / "scl.tif", PrepareConfig(resolution_m=60))
    with rasterio.open(out.scl) as labels:
        assert np.array_equal(labels.read(1), product.arrays[("SCL", 20)][1::3, 1::3])


def test_scl_is_never_read_through_jpeg2000_overviews(tmp_path):
    """Wavelet overviews blend codes; a nearest read at full resolution keeps only real ones."""
    codes = np.zeros((600, 600), np.uint8)
    codes[:, 300:] = 11
    codes[::7, :] = 9
    write_jp2(tmp_path / "scl.jp2", codes, 20)
    with rasterio.open(tmp_path / "scl.jp2") as src:
        got = safe.read_nearest(src, Window(0, 0, 200, 200), 60, 20)
        blended = src.read(1, out_shape=(200, 200))
    assert np.array_equal(got, codes[1::3, 1::3])
    assert set(np.unique(blended)) - {0, 9, 11}  # what the brief warns about, shown on this very file


def test_messages_for_wrong_inputs(tmp_path):
    product = make_safe(tmp_path / "p", "04.00", resolutions=(60,))
    with pytest.raises(InputError, match="has no TCI at 20 m; it has TCI at 60 m"):
        prepare_l2a(product.path, tmp_path / "a.tif", tmp_path / "b.tif", PrepareConfig())
    l1c = tmp_path / "S2A_MSIL1C_20230704T101559_N0509_R065_T32TQM_20230704T120000.SAFE"
    l1c.mkdir()
    (l1c / "MTD_MSIL1C.xml").write_text("<x/>")
    with pytest.raises(InputError, match="Level-1C product, which has no Scene Classification Layer"):
        safe.open_product(l1c)
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable zip"):
        safe.open_product(tmp_path / "broken.zip")
    with pytest.raises(InputError, match="does not exist"):
        safe.open_product(tmp_path / "missing.SAFE")


def test_codes_above_11_are_refused(tmp_path):
    product = make_safe(tmp_path, "04.00", resolutions=(60,), scl_resolutions=(60,))
    bad = product.arrays[("SCL", 60)].copy()
    bad[4, 4] = 13
    path = next(product.path.rglob("*_SCL_60m.jp2"))
    write_jp2(path, bad, 60)
    with pytest.raises(MaskCodeError, match="codes 13"):
        prepare_l2a(product.path, tmp_path / "a.tif", tmp_path / "b.tif", PrepareConfig(resolution_m=60))
    assert not any(tmp_path.glob("*.tif")) and not any(tmp_path.glob(".*part*"))


def test_cancel_leaves_nothing_behind(tmp_path):
    product = make_safe(tmp_path, "04.00", resolutions=(20,))
    with pytest.raises(Canceled):
        prepare_l2a(product.path, tmp_path / "a.tif", tmp_path / "b.tif",
                    PrepareConfig(rows_per_band=10), progress=RecordingProgress(cancel_after_checks=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == [product.path.name]
