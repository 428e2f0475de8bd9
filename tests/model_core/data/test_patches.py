"""Patch windows, the train/validation split, and make_patches on real GeoTIFFs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches, parse_bands
from scl_deeplab.model_core.data.synthetic import make_sample_scene
from scl_deeplab.model_core.data.windows import plan_windows, split_windows, val_count
from scl_deeplab.model_core.errors import (
    BandCountError,
    Canceled,
    GridError,
    InputError,
    MaskCodeError,
    OutputError,
    RasterReadError,
)
from scl_deeplab.model_core.evaluation.preview import pick_patches
from scl_deeplab.model_core.sizing import axis_offsets
from scl_deeplab.tests.recording import RecordingProgress

ORIGIN = (500000.0, 6000000.0)


def write_scene(path: Path, data: np.ndarray, pixel_m: float = 20.0, origin=ORIGIN, crs="EPSG:32633") -> Path:
    count, height, width = data.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name, crs=crs,
                   transform=from_origin(*origin, pixel_m, pixel_m))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def write_mask(path: Path, codes: np.ndarray, pixel_m: float = 20.0, origin=ORIGIN) -> Path:
    return write_scene(path, codes[None].astype(np.uint8), pixel_m, origin)


def random_scene(tmp_path: Path, size: int = 96, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(1, 255, size=(3, size, size), dtype=np.uint8)
    codes = rng.integers(1, 12, size=(size, size), dtype=np.uint8)
    return write_scene(tmp_path / "scene.tif", rgb), write_mask(tmp_path / "scl.tif", codes), rgb, codes


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# --- window maths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width,height,size,stride", [(100, 70, 32, 32), (96, 96, 32, 32), (130, 64, 40, 16), (64, 200, 64, 48)]
)
def test_windows_cover_every_pixel_and_stay_inside(width, height, size, stride):
    windows = plan_windows(width, height, size, stride)
    counts = np.zeros((height, width), int)
    for w in windows:
        assert 0 <= w.col_off <= width - size and 0 <= w.row_off <= height - size
        assert (w.width, w.height) == (size, size)
        counts[w.toslices()] += 1
    assert (counts >= 1).all()
    expected = len(axis_offsets(width, size, stride)) * len(axis_offsets(height, size, stride))
    assert len(windows) == expected


def test_side_by_side_windows_overlap_only_at_the_shifted_edge():
    counts = np.zeros((70, 100), int)
    for w in plan_windows(100, 70, 32, 32):
        counts[w.toslices()] += 1
    assert counts[:38, :68].max() == 1
    assert (counts[38:64, :68] == 2).all()  # last row moved inward by 26 px
    assert (counts[:38, 68:96] == 2).all() and (counts[:38, 96:] == 1).all()  # last column moved by 28 px


def test_val_count():
    assert val_count(10, 0.2) == 2
    assert val_count(3, 0.1) == 1
    assert val_count(1, 0.5) == 0
    assert val_count(5, 0.0) == 0
    assert val_count(2, 0.9) == 1


@pytest.mark.parametrize("stride", [64, 32, 24])
def test_block_split_never_puts_overlapping_windows_on_both_sides(stride):
    windows = plan_windows(640, 512, 64, stride)
    labels = split_windows(windows, split="blocks", val_fraction=0.2, seed=3, patch_size_px=64)
    train = [w for w, lab in zip(windows, labels) if lab == "train"]
    val = [w for w, lab in zip(windows, labels) if lab == "val"]
    assert train and val
    for t in train:
        for v in val:
            assert not _intersect(t, v)
    if stride == 64:
        assert "dropped" not in labels
        assert len(val) == pytest.approx(0.2 * len(windows), abs=8)


def test_block_split_is_seeded():
    windows = plan_windows(640, 640, 64, 64)
    a = split_windows(windows, split="blocks", val_fraction=0.2, seed=1, patch_size_px=64)
    b = split_windows(windows, split="blocks", val_fraction=0.2, seed=1, patch_size_px=64)
    c = split_windows(windows, split="blocks", val_fraction=0.2, seed=2, patch_size_px=64)
    assert a == b and a != c


def test_random_split_takes_exactly_the_fraction():
    windows = plan_windows(640, 640, 64, 64)
    labels = split_windows(windows, split="random", val_fraction=0.25, seed=0, patch_size_px=64)
    assert labels.count("val") == 25 and labels.count("train") == 75


def _intersect(a: Window, b: Window) -> bool:
    return (
        min(a.col_off + a.width, b.col_off + b.width) > max(a.col_off, b.col_off)
        and min(a.row_off + a.height, b.row_off + b.height) > max(a.row_off, b.row_off)
    )


def test_parse_bands():
    assert parse_bands("4, 3,2") == (4, 3, 2)
    # Issue 18: any number of bands (multispectral input); what is not a list of band numbers is still refused.
    assert parse_bands("3,2,1,4,5,6") == (3, 2, 1, 4, 5, 6)
    assert parse_bands("1,2") == (1, 2)
    with pytest.raises(InputError, match="not band numbers"):
        parse_bands("red,green,blue")
    for bad in ("", "0,1,2", "1,1,2"):
        with pytest.raises(InputError, match="not band numbers"):
            parse_bands(bad)


# --- make_patches -----------------------------------------------------------------------------


def test_patches_match_the_scene_and_keep_georeferencing(tmp_path):
    image, mask, rgb, codes = random_scene(tmp_path, size=100)
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, val_fraction=0.25))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert result.tried == 16 and result.train_count + result.val_count == 16
    assert result.val_count == pytest.approx(4, abs=1) and result.dropped == 0
    assert len(manifest["patches"]) == 16
    for patch in manifest["patches"]:
        win = patch["window"]
        rows = slice(win["row_off"], win["row_off"] + 32)
        cols = slice(win["col_off"], win["col_off"] + 32)
        assert patch["id"] == f"r{win['row_off']:05d}_c{win['col_off']:05d}"
        with rasterio.open(tmp_path / "out" / patch["image"]) as src:
            assert np.array_equal(src.read(), rgb[:, rows, cols])
            assert src.crs.to_epsg() == 32633
            left, top = ORIGIN[0] + 20 * win["col_off"], ORIGIN[1] - 20 * win["row_off"]
            assert src.transform == from_origin(left, top, 20, 20)
            assert list(src.bounds) == patch["bounds"]
        with rasterio.open(tmp_path / "out" / patch["mask"]) as src:
            assert np.array_equal(src.read(1), codes[rows, cols])
            assert src.colormap(1)[6][:3] == scl.BY_CODE[6].rgb
        counts = np.bincount(codes[rows, cols].ravel(), minlength=12)
        assert patch["histogram"] == {str(c): int(n) for c, n in enumerate(counts) if n}
    assert {p["window"]["col_off"] for p in manifest["patches"]} == {0, 32, 64, 68}


def test_manifest_follows_the_contract(tmp_path):
    image, mask, _, codes = random_scene(tmp_path, size=96)
    config = PatchConfig(patch_size_px=32, stride_px=16, seed=4, val_fraction=0.3, min_valid_fraction=0.4)
    result = make_patches(image, mask, tmp_path / "out", config)
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert set(manifest) == {
        "format", "version", "patch_size", "stride", "bands", "dtype", "input_scale", "crs", "source", "split",
        "seed", "val_fraction", "min_valid_fraction", "class_histogram", "patches",
        "scenes", "train_scenes", "val_scenes",  # version 2: the scenes the patches came from
        "band_names",  # issue 18: the names of the bands the model reads
    }
    assert manifest["band_names"] == ["red", "green", "blue"]  # three bands without descriptions are true colour
    assert manifest["format"] == "scl-deeplab-patches" and manifest["version"] == 2
    assert (manifest["patch_size"], manifest["stride"], manifest["bands"]) == (32, 16, [1, 2, 3])
    assert (manifest["dtype"], manifest["input_scale"], manifest["crs"]) == ("uint8", 255.0, "EPSG:32633")
    assert manifest["source"] == {"image": str(image.resolve()), "mask": str(mask.resolve())}
    assert (manifest["split"], manifest["seed"], manifest["val_fraction"], manifest["min_valid_fraction"]) == (
        "blocks", 4, 0.3, 0.4)
    assert [s["name"] for s in manifest["scenes"]] == ["scene"] and manifest["scenes"][0]["split"] == "both"
    assert manifest["train_scenes"] == manifest["val_scenes"] == ["scene"]
    assert manifest["scenes"][0]["class_histogram"] == manifest["class_histogram"]
    patch = manifest["patches"][0]
    assert set(patch) == {"id", "scene", "image", "mask", "split", "window", "bounds", "valid_fraction", "histogram"}
    assert {p["scene"] for p in manifest["patches"]} == {"scene"}
    hist = manifest["class_histogram"]
    assert set(hist) == {"train", "val", "total"} and set(hist["total"]) == {str(c) for c in range(12)}
    for code in range(12):
        assert hist["total"][str(code)] == hist["train"][str(code)] + hist["val"][str(code)]
        assert hist["train"][str(code)] == sum(
            p["histogram"].get(str(code), 0) for p in manifest["patches"] if p["split"] == "train")
    assert result.train_count == sum(p["split"] == "train" for p in manifest["patches"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["images", "index.json", "masks", "preview.png"]
    files = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert files == sorted(Path(p["image"]).name for p in manifest["patches"])  # dropped patches leave no file
    assert result.preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_patches_need_the_minimum_valid_fraction(tmp_path):
    image, _, _, codes = random_scene(tmp_path, size=128)
    codes[:, :48] = 0  # columns 0-47 have no data
    mask = write_mask(tmp_path / "holes.tif", codes)
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, min_valid_fraction=0.5))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    # column 0 (0 % valid) is out, column 32 (50 % valid) is kept.
    assert sorted({p["window"]["col_off"] for p in manifest["patches"]}) == [32, 64, 96]
    assert {p["valid_fraction"] for p in manifest["patches"] if p["window"]["col_off"] == 32} == {0.5}
    assert manifest["class_histogram"]["total"]["0"] == 4 * 32 * 16


def test_nan_and_no_data_pixels_of_a_float_scene_count_as_code_0(tmp_path):
    rng = np.random.default_rng(2)
    values = rng.uniform(0.01, 1.0, (3, 128, 128)).astype(np.float32)
    values[:, :, :48] = np.nan  # columns 0-47: NaN, like SCL code 0 in the test above
    values[:, 96:, 96:] = -9999.0  # the raster's no-data value: the bottom-right patch is empty
    image = write_scene(tmp_path / "scene.tif", values)
    with rasterio.open(image, "r+") as dst:
        dst.nodata = -9999.0
    mask = write_mask(tmp_path / "scl.tif", rng.integers(1, 12, (128, 128), dtype=np.uint8))
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, min_valid_fraction=0.5))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    windows = {(p["window"]["row_off"], p["window"]["col_off"]): p for p in manifest["patches"]}
    assert sorted({col for _, col in windows}) == [32, 64, 96] and (96, 96) not in windows
    assert {p["valid_fraction"] for (_, col), p in windows.items() if col == 32} == {0.5}
    with rasterio.open(tmp_path / "out" / windows[(0, 32)]["image"]) as src:
        pixels = src.read()
    with rasterio.open(tmp_path / "out" / windows[(0, 32)]["mask"]) as src:
        codes = src.read(1)
    assert not np.isnan(pixels).any() and (pixels[:, :, :16] == 0).all()
    assert (codes[:, :16] == 0).all() and (codes[:, 16:] > 0).all()


def test_pixels_whose_bands_are_all_0_count_as_code_0_as_predict_leaves_them(tmp_path):
    # No no-data value set, yet black in every band: Predict writes no data there, so no label is learnt from it.
    rng = np.random.default_rng(3)
    rgb = rng.integers(1, 255, size=(3, 32, 32), dtype=np.uint8)
    rgb[:, :4, :] = 0  # four black rows
    rgb[0, 4, :] = 0  # one band 0 only: a real (if dark red-free) colour, kept
    image = write_scene(tmp_path / "scene.tif", rgb)
    mask = write_mask(tmp_path / "scl.tif", np.ones((32, 32), np.uint8))  # "saturated or defective" everywhere
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, val_fraction=0))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    with rasterio.open(tmp_path / "out" / manifest["patches"][0]["mask"]) as src:
        codes = src.read(1)
    assert (codes[:4] == 0).all() and (codes[4:] == 1).all()


def test_patches_too_large_to_hold_any_out_say_what_to_change(tmp_path):
    image, mask, _, _ = random_scene(tmp_path, size=128)
    lines = RecordingProgress()
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=96, val_fraction=0.2),
                          progress=lines)  # four windows, every two overlapping: no block can be kept apart
    assert result.val_count == 0
    assert any("smaller PATCH_SIZE than 96 px" in line for line in lines.warnings)


def test_coarser_mask_is_resampled_with_nearest(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(1, 255, size=(3, 64, 64), dtype=np.uint8)
    coarse = rng.integers(1, 12, size=(32, 32), dtype=np.uint8)
    image = write_scene(tmp_path / "scene_20m.tif", rgb)
    mask = write_mask(tmp_path / "scl_40m.tif", coarse, pixel_m=40.0)
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, val_fraction=0))
    expected = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert len(manifest["patches"]) == 4
    for patch in manifest["patches"]:
        win = Window(**patch["window"])
        with rasterio.open(tmp_path / "out" / patch["mask"]) as src:
            assert src.transform.a == 20.0
            assert np.array_equal(src.read(1), expected[win.toslices()])


def test_finer_mask_is_read_onto_the_scene_grid(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(1, 255, size=(3, 32, 32), dtype=np.uint8)
    coarse = rng.integers(1, 12, size=(32, 32), dtype=np.uint8)
    image = write_scene(tmp_path / "scene_60m.tif", rgb, pixel_m=60.0)
    fine = np.repeat(np.repeat(coarse, 3, axis=0), 3, axis=1)  # 20 m SCL under a 60 m scene
    mask = write_mask(tmp_path / "scl_20m.tif", fine, pixel_m=20.0)
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=16, val_fraction=0))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    for patch in manifest["patches"]:
        with rasterio.open(tmp_path / "out" / patch["mask"]) as src:
            assert np.array_equal(src.read(1), coarse[Window(**patch["window"]).toslices()])


def test_mask_covering_part_of_the_scene_counts_as_no_data_outside(tmp_path):
    image, _, _, _ = random_scene(tmp_path, size=64)
    ones = np.full((64, 32), 4, np.uint8)  # covers the left half only
    mask = write_mask(tmp_path / "half.tif", ones)
    result = make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=32, val_fraction=0))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert [p["window"]["col_off"] for p in manifest["patches"]] == [0, 0]


def test_uint16_reflectance_and_band_order(tmp_path):
    scene = make_sample_scene(tmp_path / "s.tif", tmp_path / "l.tif", size=128, seed=3, dtype="uint16")
    config = PatchConfig(patch_size_px=64, bands=(3, 2, 1), val_fraction=0)
    result = make_patches(scene.image, scene.scl, tmp_path / "out", config)
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert manifest["dtype"] == "uint16" and manifest["input_scale"] == 2500.0 and manifest["bands"] == [3, 2, 1]
    patch = manifest["patches"][0]
    with rasterio.open(scene.image) as src, rasterio.open(tmp_path / "out" / patch["image"]) as out:
        win = Window(**patch["window"])
        assert out.dtypes == ("uint16",) * 3
        assert np.array_equal(out.read(1), src.read(3, window=win))
        assert np.array_equal(out.read(3), src.read(1, window=win))


def test_sample_scene_patches_show_many_classes_in_the_preview(tmp_path):
    scene = make_sample_scene(tmp_path / "s.tif", tmp_path / "l.tif", size=256, seed=0)
    result = make_patches(scene.image, scene.scl, tmp_path / "out", PatchConfig(patch_size_px=64))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    shown = pick_patches(manifest["patches"], 4)
    assert len(shown) == 4
    classes = set().union(*(p["histogram"] for p in shown)) - {"0"}
    assert len(classes) >= 9
    assert result.val_count >= 2 and result.train_count >= 9
    assert result.preview.stat().st_size > 20_000


def test_overwrite_replaces_a_previous_run(tmp_path):
    image, mask, _, _ = random_scene(tmp_path, size=64)
    out = tmp_path / "out"
    make_patches(image, mask, out, PatchConfig(patch_size_px=32))
    (out / "images" / "stale.tif").write_text("old")  # the earlier run's patch folders go as a whole
    (out / "preview.png.aux.xml").write_text("<PAMDataset/>")  # GDAL's sidecar when QGIS opened the preview
    result = make_patches(image, mask, out, PatchConfig(patch_size_px=64, overwrite=True))
    assert not (out / "images" / "stale.tif").exists() and result.train_count == 1
    assert not (out / "preview.png.aux.xml").exists()
    assert leftovers(tmp_path) == []


def test_overwrite_refuses_a_folder_holding_the_inputs_or_files_it_did_not_write(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    image, mask, _, _ = random_scene(out, size=64)  # the inputs live in the output folder
    with pytest.raises(OutputError, match="holds this run's input .*scene.tif"):
        make_patches(image, mask, out, PatchConfig(patch_size_px=32, overwrite=True))
    assert sorted(p.name for p in out.iterdir()) == ["scene.tif", "scl.tif"]

    image, mask, _, _ = random_scene(tmp_path, size=64)
    make_patches(image, mask, tmp_path / "run", PatchConfig(patch_size_px=32))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    (tmp_path / "run" / "field").mkdir()
    with pytest.raises(OutputError, match=r"did not write \(field, notes.txt\)"):
        make_patches(image, mask, tmp_path / "run", PatchConfig(patch_size_px=64, overwrite=True))
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert len(json.loads((tmp_path / "run" / "index.json").read_text())["patches"]) == 4

    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "images").mkdir()  # without an index this is not makepatches' folder
    with pytest.raises(OutputError, match=r"did not write \(images\)"):
        make_patches(image, mask, tmp_path / "own", PatchConfig(patch_size_px=32, overwrite=True))
    assert leftovers(tmp_path) == []


# --- bad input: a clear message, nothing written ------------------------------------------------


def _bad(tmp_path, error, match, image=None, mask=None, **config):
    if image is None or mask is None:
        image, mask, _, _ = random_scene(tmp_path, size=64)
    with pytest.raises(error, match=match):
        make_patches(image, mask, tmp_path / "out", PatchConfig(**{"patch_size_px": 32, **config}))
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


def test_rejects_mask_codes_outside_0_to_11(tmp_path):
    image, _, _, codes = random_scene(tmp_path, size=64)
    codes[40, 40], codes[50, 3] = 15, 12
    mask = write_mask(tmp_path / "bad.tif", codes)
    _bad(tmp_path, MaskCodeError, "codes 12, 15 are not SCL codes", image, mask)


def test_rejects_fewer_than_3_bands(tmp_path):
    image = write_scene(tmp_path / "two.tif", np.ones((2, 64, 64), np.uint8))
    mask = write_mask(tmp_path / "scl.tif", np.full((64, 64), 4, np.uint8))
    _bad(tmp_path, BandCountError, "has 2 band\\(s\\); a true-colour scene needs at least 3", image, mask)


def test_rejects_bands_the_scene_lacks(tmp_path):
    _bad(tmp_path, BandCountError, "band\\(s\\) \\[4\\] do not exist", bands=(4, 2, 1))


def test_rejects_patch_larger_than_scene(tmp_path):
    _bad(tmp_path, InputError, "patch size 128 px is larger than the scene \\(64 x 64 px\\); use at most 64",
         patch_size_px=128)


def test_rejects_patch_size_not_multiple_of_8(tmp_path):
    _bad(tmp_path, InputError, "patch size 30 px is not a positive multiple of 8; use e.g. 24 or 32", patch_size_px=30)


@pytest.mark.parametrize("stride", [0, -8])
def test_rejects_stride_not_positive(tmp_path, stride):
    _bad(tmp_path, InputError, f"stride must be a positive number of pixels, not {stride}", stride_px=stride)


def test_rejects_when_no_patch_is_valid_enough(tmp_path):
    image, _, _, codes = random_scene(tmp_path, size=64)
    codes[:, :] = 0
    codes[:8, :8] = 4  # the best patch is 64/1024 = 6.2 % valid
    mask = write_mask(tmp_path / "sparse.tif", codes)
    _bad(tmp_path, InputError, "None of the 4 patches has at least 50% valid SCL pixels .*; the best has 6.2%",
         image, mask)


def test_refuses_a_non_empty_output_folder(tmp_path):
    image, mask, _, _ = random_scene(tmp_path, size=64)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="is not empty"):
        make_patches(image, mask, out, PatchConfig(patch_size_px=32))
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    assert leftovers(tmp_path) == []


def test_rejects_unreadable_files(tmp_path):
    _, mask, _, _ = random_scene(tmp_path, size=64)
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    _bad(tmp_path, RasterReadError, "Cannot read the raster .*broken.tif", broken, mask)
    image = tmp_path / "scene.tif"
    _bad(tmp_path, RasterReadError, "Cannot read the raster .*missing.tif", image, tmp_path / "missing.tif")


def test_rejects_a_mask_that_does_not_overlap(tmp_path):
    image, _, _, codes = random_scene(tmp_path, size=64)
    far = write_mask(tmp_path / "far.tif", codes, origin=(700000.0, 5000000.0))
    _bad(tmp_path, GridError, "does not overlap the scene", image, far)


def test_cancel_leaves_nothing(tmp_path):
    image, mask, _, _ = random_scene(tmp_path, size=64)
    with pytest.raises(Canceled):
        make_patches(image, mask, tmp_path / "out", PatchConfig(patch_size_px=16),
                     progress=RecordingProgress(cancel_after_steps=3))
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_patches_and_sample_scenes_work_without_torch(tmp_path):
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from scl_deeplab.model_core.data.synthetic import make_sample_scene\n"
        "from scl_deeplab.model_core.data.patches import PatchConfig, make_patches\n"
        f"s = make_sample_scene({str(tmp_path / 's.tif')!r}, {str(tmp_path / 'l.tif')!r}, size=128)\n"
        f"r = make_patches(s.image, s.scl, {str(tmp_path / 'out')!r}, PatchConfig(patch_size_px=64))\n"
        "print(r.train_count + r.val_count)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "4"


def test_mask_in_another_crs_is_reprojected_onto_the_scene(tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    blocks = np.kron(np.arange(16, dtype=np.uint8).reshape(4, 4) % 11 + 1, np.ones((16, 16), np.uint8))
    image = write_scene(tmp_path / "scene.tif", np.full((3, 64, 64), 90, np.uint8))
    src_transform = from_origin(*ORIGIN, 20.0, 20.0)
    bounds = (ORIGIN[0], ORIGIN[1] - 64 * 20.0, ORIGIN[0] + 64 * 20.0, ORIGIN[1])
    transform, width, height = calculate_default_transform("EPSG:32633", "EPSG:32632", 64, 64, *bounds)
    other = np.zeros((height, width), np.uint8)
    reproject(blocks, other, src_transform=src_transform, src_crs="EPSG:32633", dst_transform=transform,
              dst_crs="EPSG:32632", resampling=Resampling.nearest)
    with rasterio.open(tmp_path / "scl_32632.tif", "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="uint8", crs="EPSG:32632", transform=transform, nodata=0) as dst:
        dst.write(other, 1)
    result = make_patches(image, tmp_path / "scl_32632.tif", tmp_path / "out",
                          PatchConfig(patch_size_px=64, min_valid_fraction=0.0, val_fraction=0))
    manifest = json.loads(result.index.read_text(encoding="utf-8"))
    assert manifest["crs"] == "EPSG:32633" and len(manifest["patches"]) == 1
    with rasterio.open(tmp_path / "out" / manifest["patches"][0]["mask"]) as src:
        assert src.crs.to_epsg() == 32633
        back = src.read(1)
    assert set(np.unique(back)) <= set(np.unique(blocks)) | {0}
    assert (back == blocks).mean() > 0.9  # nearest keeps codes; only block edges may move by a pixel


def test_full_disk_is_an_error_and_leaves_nothing(tmp_path):
    from scl_deeplab.tests.full_disk import fill, tiny_disk

    image, mask, _, _ = random_scene(tmp_path, size=256)
    with tiny_disk(tmp_path / "disk", 1024) as disk:
        fill(disk, 96)  # random pixels do not compress: 256 x 256 x 3 bytes do not fit
        with pytest.raises(OutputError, match="No space left on .*disk"):
            make_patches(image, mask, disk / "out", PatchConfig(patch_size_px=64, preview_patches=0))
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]
