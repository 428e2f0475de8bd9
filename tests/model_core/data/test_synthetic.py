"""Sample scenes: georeferenced, every SCL class present, the same for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scl_deeplab.model_core import scl, styles
from scl_deeplab.model_core.data.noise import SmoothField
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.errors import Canceled
from scl_deeplab.tests.recording import RecordingProgress


def _read(scene):
    with rasterio.open(scene.image) as img, rasterio.open(scene.scl) as lab:
        return img.read(), lab.read(1), img.profile, lab.profile, lab.colormap(1)


def test_scene_is_georeferenced_utm_20m_with_colour_table(tmp_path):
    scene = make_sample_scene(tmp_path / "scene.tif", tmp_path / "scl.tif", size=128, seed=1)
    rgb, codes, img, lab, colours = _read(scene)
    assert rgb.shape == (3, 128, 128) and rgb.dtype == np.uint8
    assert codes.shape == (128, 128) and codes.dtype == np.uint8
    for profile in (img, lab):
        assert profile["crs"].to_epsg() == 32633
        assert profile["transform"].a == 20.0 and profile["transform"].e == -20.0
    assert img["transform"] == lab["transform"]
    assert colours[4][:3] == scl.BY_CODE[4].rgb and colours[9][:3] == (255, 255, 255)
    assert (tmp_path / "scl.qml").read_text(encoding="utf-8") == styles.scl_qml()


@pytest.mark.parametrize("width,height,seed", [(128, 128, 0), (128, 128, 7), (64, 64, 3), (300, 96, 11)])
def test_every_class_and_a_no_data_corner(tmp_path, width, height, seed):
    scene = make_sample_scene(tmp_path / "s.tif", tmp_path / "l.tif", width=width, height=height, seed=seed)
    rgb, codes, *_ = _read(scene)
    assert codes.shape == (height, width)
    assert sorted(np.unique(codes)) == list(range(12))
    assert scene.class_counts == {c: int((codes == c).sum()) for c in range(12)}
    no_data = codes == scl.NO_DATA
    assert (rgb[:, no_data] == 0).all()
    assert (rgb[:, ~no_data].max(axis=0) > 0).all()  # 0 in every band only in the no-data corner
    corners = [no_data[0, 0], no_data[0, -1], no_data[-1, 0], no_data[-1, -1]]
    assert sum(corners) == 1
    assert 0.02 < no_data.mean() < 0.08


def test_regions_are_coherent_and_classes_overlap_in_colour(tmp_path):
    scene = make_sample_scene(tmp_path / "s.tif", tmp_path / "l.tif", size=256, seed=2)
    rgb, codes, *_ = _read(scene)
    same_as_right = (codes[:, 1:] == codes[:, :-1]).mean()
    assert same_as_right > 0.9  # regions, not salt and pepper
    brightness = rgb.astype(float).mean(axis=0)
    water, shadow, dark = (brightness[codes == c] for c in (6, 3, 2))
    # Dark classes share a brightness range: colour alone does not separate them.
    assert max(water.min(), shadow.min(), dark.min()) < min(water.max(), shadow.max(), dark.max())
    assert brightness[codes == 9].mean() > 190 and brightness[codes == 11].mean() > 190
    assert (rgb[:, codes == 1] == 255).all()


def test_same_seed_same_scene_other_seed_other_scene(tmp_path):
    a = make_sample_scene(tmp_path / "a.tif", tmp_path / "a_scl.tif", width=300, height=280, seed=5)
    b = make_sample_scene(tmp_path / "b.tif", tmp_path / "b_scl.tif", width=300, height=280, seed=5)
    c = make_sample_scene(tmp_path / "c.tif", tmp_path / "c_scl.tif", width=300, height=280, seed=6)
    ra, la, *_ = _read(a)
    rb, lb, *_ = _read(b)
    rc, lc, *_ = _read(c)
    assert np.array_equal(ra, rb) and np.array_equal(la, lb)
    assert (la != lc).mean() > 0.3


def test_uint16_scene_is_reflectance_numbers(tmp_path):
    a = make_sample_scene(tmp_path / "a.tif", tmp_path / "a_scl.tif", size=96, seed=4)
    b = make_sample_scene(tmp_path / "b.tif", tmp_path / "b_scl.tif", size=96, seed=4, dtype="uint16")
    ra, la, *_ = _read(a)
    rb, lb, *_ = _read(b)
    assert rb.dtype == np.uint16 and np.array_equal(la, lb)
    assert np.abs(rb / 2000.0 - ra / 255.0).max() < 0.01


def test_cancel_leaves_no_file(tmp_path):
    with pytest.raises(Canceled):
        make_sample_scene(tmp_path / "s.tif", tmp_path / "l.tif", size=600,
                          progress=RecordingProgress(cancel_after_steps=1))
    assert list(tmp_path.iterdir()) == []


def test_smooth_field_gives_the_same_values_block_by_block():
    field = SmoothField(np.random.default_rng(0), 300, 200, 40.0, 60.0, 3, 10.0)
    rows, cols = np.arange(300), np.arange(200)
    whole = field.at(rows, cols)
    parts = np.vstack([field.at(rows[:128], cols), field.at(rows[128:], cols)])
    assert np.allclose(whole, parts, atol=1e-6)
    assert whole.shape == (300, 200) and np.abs(whole).max() <= 1.0
    assert np.abs(np.diff(whole, axis=1)).max() < 0.2  # smooth: neighbours differ little
    shifted = field.at(rows[:10], cols[:10], (5.0, 7.0))
    assert np.allclose(shifted, field.at(rows[5:15], cols[7:17]), atol=1e-6)
