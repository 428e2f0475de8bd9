"""make_patches over several scenes: one manifest with scene ids, splits by scene, bad scenes named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from scl_deeplab.model_core.data.manifest import Manifest
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches, parse_names
from scl_deeplab.model_core.data.scenes import Scene, read_scene_list
from scl_deeplab.model_core.data.synthetic import ORIGIN, make_sample_scene
from scl_deeplab.model_core.data.windows import split_scenes
from scl_deeplab.model_core.errors import InputError, MaskCodeError
from scl_deeplab.model_core.evaluation.preview import pick_patches
from scl_deeplab.tests.recording import RecordingProgress

NAMES = ("north", "east", "south")


@pytest.fixture(scope="module")
def scene_list(tmp_path_factory) -> Path:
    """Three 128 px sample scenes and a list naming them by relative paths."""
    folder = tmp_path_factory.mktemp("scenes")
    for seed, name in enumerate(NAMES):
        make_sample_scene(folder / "data" / f"{name}.tif", folder / "data" / f"{name}_scl.tif", size=128, seed=seed)
    lines = ["# three sample scenes"] + [f"data/{n}.tif, data/{n}_scl.tif" for n in NAMES]
    (folder / "scenes.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "scenes.txt"


def write_raster(path: Path, data: np.ndarray, pixel_m: float = 20.0, origin=ORIGIN) -> Path:
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                       crs="EPSG:32633", transform=from_origin(*origin, pixel_m, pixel_m)) as dst:
        dst.write(data)
    return path


def nothing_written(tmp_path: Path) -> bool:
    return not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_three_scene_list_gives_one_manifest_with_scene_ids_and_a_scene_split(scene_list, tmp_path):
    progress = RecordingProgress()
    config = PatchConfig(patch_size_px=64, split="scenes", val_scenes=("south",), preview_patches=4)
    result = make_patches(read_scene_list(scene_list), tmp_path / "out", config, progress=progress)
    manifest = Manifest.load(result.index)
    data = json.loads(result.index.read_text(encoding="utf-8"))
    assert [s.name for s in manifest.scenes] == list(NAMES)
    assert [s.split for s in manifest.scenes] == ["train", "train", "val"]
    assert (data["train_scenes"], data["val_scenes"]) == (["north", "east"], ["south"])
    assert (result.train_scenes, result.val_scenes) == (("north", "east"), ("south",))
    assert {p.scene for p in manifest.val} == {"south"} and {p.scene for p in manifest.train} == {"north", "east"}
    assert len({p.id for p in manifest.patches}) == len(manifest.patches) == result.train_count + result.val_count
    assert result.tried == 12 and result.val_count >= 1 and result.train_count >= 2
    for patch in manifest.patches:
        assert patch.id.startswith(patch.scene + "_r") and patch.image.name == patch.id + ".tif"
        with rasterio.open(scene_list.parent / "data" / f"{patch.scene}.tif") as src, rasterio.open(patch.image) as out:
            assert np.array_equal(out.read(), src.read(window=Window(**patch.window)))
        with rasterio.open(scene_list.parent / "data" / f"{patch.scene}_scl.tif") as src, rasterio.open(patch.mask) as out:
            assert np.array_equal(out.read(1), src.read(1, window=Window(**patch.window)))
    total = np.zeros(12, np.int64)
    for scene in manifest.scenes:
        hist = scene.class_histogram
        mine = [p for p in manifest.patches if p.scene == scene.name]
        assert scene.train_patches + scene.val_patches == len(mine)
        assert sum(hist["total"].values()) == len(mine) * 64 * 64
        assert result.scene_histograms[scene.name] == hist["total"]
        total += np.array([hist["total"][str(c)] for c in range(12)])
    assert [data["class_histogram"]["total"][str(c)] for c in range(12)] == total.tolist()
    assert data["class_histogram"]["val"] == manifest.scenes[2].class_histogram["total"]
    assert "Training scenes: north, east." in progress.infos and "Validation scenes: south." in progress.infos
    shown = pick_patches(data["patches"], 4)
    assert len({p["scene"] for p in shown}) == 3  # the preview shows every scene
    assert result.preview.stat().st_size > 20_000


def test_scene_split_by_fraction_takes_at_least_one_seeded_scene(scene_list, tmp_path):
    scenes = read_scene_list(scene_list)
    config = PatchConfig(patch_size_px=64, split="scenes", val_fraction=0.1, seed=3, preview_patches=0)
    a = make_patches(scenes, tmp_path / "a", config)
    b = make_patches(scenes, tmp_path / "b", config)
    assert len(a.val_scenes) == 1 and a.val_scenes == b.val_scenes
    assert set(a.train_scenes) == set(NAMES) - set(a.val_scenes)


def test_block_split_over_several_scenes_validates_within_each(scene_list, tmp_path):
    config = PatchConfig(patch_size_px=32, val_fraction=0.25, preview_patches=0)
    result = make_patches(read_scene_list(scene_list), tmp_path / "out", config)
    manifest = Manifest.load(result.index)
    assert [s.split for s in manifest.scenes] == ["both"] * 3
    assert result.train_scenes == result.val_scenes == NAMES
    for scene in manifest.scenes:
        assert scene.val_patches == pytest.approx(0.25 * (scene.train_patches + scene.val_patches), abs=2)


def test_split_scenes_names_or_fraction():
    assert split_scenes(["a", "b", "c"], val_names=["c", "a"]) == ["val", "train", "val"]
    assert split_scenes(["a", "b"], val_fraction=0.9).count("val") == 1  # never all
    assert split_scenes(list("abcdefghij"), val_fraction=0.3, seed=1).count("val") == 3
    assert split_scenes(list("abcdefghij"), val_fraction=0.3, seed=1) == split_scenes(
        list("abcdefghij"), val_fraction=0.3, seed=1)
    with pytest.raises(InputError, match="Validation scenes x are not among the scenes \\(a, b\\)"):
        split_scenes(["a", "b"], val_names=["x"])
    with pytest.raises(InputError, match="needs at least 2 scenes, not 1"):
        split_scenes(["a"], val_fraction=0.5)
    with pytest.raises(InputError, match="Every scene is named for validation"):
        split_scenes(["a", "b"], val_names=["a", "b"])
    with pytest.raises(InputError, match="sends no scene to validation"):
        split_scenes(["a", "b"], val_fraction=0.0)


def test_parse_names():
    assert parse_names(" south, east;south\n") == ("south", "east")
    assert parse_names("") == ()


# --- bad input: a clear message naming the scene, nothing written -----------------------------------


def test_empty_validation_set_is_refused(scene_list, tmp_path):
    scenes = read_scene_list(scene_list)
    image = scenes[0].image
    empty = write_raster(tmp_path / "empty_scl.tif", np.zeros((1, 128, 128), np.uint8))
    scenes.append(Scene(image, empty, "cloudless"))
    config = PatchConfig(patch_size_px=64, split="scenes", val_scenes=("cloudless",))
    with pytest.raises(InputError, match=r"The validation set is empty: the validation scenes \(cloudless\) gave no "
                                         "patch with at least 50% valid SCL pixels"):
        make_patches(scenes, tmp_path / "out", config)
    assert nothing_written(tmp_path)


def test_scene_without_overlap_is_named(scene_list, tmp_path):
    scenes = read_scene_list(scene_list)
    far = write_raster(tmp_path / "far_scl.tif", np.full((1, 128, 128), 4, np.uint8), origin=(900000.0, 100000.0))
    scenes[1] = Scene(scenes[1].image, far, "east")
    with pytest.raises(InputError, match=r"1 of 3 scenes cannot be used \(nothing was written\):\n- east \(east.tif\): "
                                         r"The SCL raster .*far_scl.tif does not overlap the scene"):
        make_patches(scenes, tmp_path / "out", PatchConfig(patch_size_px=64))
    assert nothing_written(tmp_path)


def test_mixed_band_types_and_pixel_sizes_are_refused_by_name(scene_list, tmp_path):
    scenes = read_scene_list(scene_list)
    wide = make_sample_scene(tmp_path / "wide.tif", tmp_path / "wide_scl.tif", size=128, seed=5, dtype="uint16")
    rgb = np.full((3, 64, 64), 80, np.uint8)
    coarse = Scene(write_raster(tmp_path / "coarse.tif", rgb, pixel_m=40.0),
                   write_raster(tmp_path / "coarse_scl.tif", np.full((1, 64, 64), 4, np.uint8), pixel_m=40.0))
    with pytest.raises(InputError) as info:
        make_patches([*scenes, Scene(wide.image, wide.scl), coarse], tmp_path / "out", PatchConfig(patch_size_px=64))
    message = str(info.value)
    assert message.startswith("2 of 5 scenes cannot be used")
    assert "- wide: its bands are 16-bit (uint16), those of north 8-bit (uint8); all scenes need one data type" in message
    assert "- coarse: its pixels are 40, those of north 20; all scenes need one pixel size" in message
    assert nothing_written(tmp_path)


def test_codes_outside_0_to_11_are_refused_or_made_no_data(scene_list, tmp_path):
    scenes = read_scene_list(scene_list)
    with rasterio.open(scenes[0].mask) as src:
        codes = src.read(1)
    codes[:10, :10] = 12  # lossy JPEG 2000 SCLs carry code 12 near class edges
    codes[100, 100] = 15
    noisy = write_raster(tmp_path / "noisy_scl.tif", codes[None])
    scenes[0] = Scene(scenes[0].image, noisy, "north")
    with pytest.raises(InputError, match=r"- north \(north.tif\): The mask .*noisy_scl.tif: codes 12, 15 are not SCL"):
        make_patches(scenes, tmp_path / "out", PatchConfig(patch_size_px=64))
    with pytest.raises(MaskCodeError, match="codes 12, 15 are not SCL codes"):
        make_patches(scenes[0].image, noisy, tmp_path / "out", PatchConfig(patch_size_px=64))
    assert nothing_written(tmp_path)
    progress = RecordingProgress()
    config = PatchConfig(patch_size_px=64, min_valid_fraction=0.0, unknown_codes_as_no_data=True, preview_patches=0)
    result = make_patches(scenes, tmp_path / "out", config, progress=progress)
    manifest = Manifest.load(result.index)
    assert [s.unknown_code_pixels for s in manifest.scenes] == [101, 0, 0]
    assert "north: 101 SCL pixels with codes 12, 15 (not SCL codes 0-11) are treated as no data." in progress.infos
    corner = next(p for p in manifest.patches if p.scene == "north" and p.window["col_off"] == 0
                  and p.window["row_off"] == 0)
    with rasterio.open(corner.mask) as src:
        written = src.read(1)
    assert (written[:10, :10] == 0).all() and np.array_equal(written[10:, 10:], codes[10:64, 10:64])
    assert written.max() <= 11


def test_one_scene_cannot_be_split_by_scenes(scene_list, tmp_path):
    scene = read_scene_list(scene_list)[0]
    with pytest.raises(InputError, match="Splitting by scenes needs at least 2 scenes, not 1"):
        make_patches([scene], tmp_path / "out", PatchConfig(patch_size_px=64, split="scenes"))
    with pytest.raises(InputError, match="Validation scenes \\(north\\) are named but the split is 'blocks'"):
        make_patches([scene], tmp_path / "out", PatchConfig(patch_size_px=64, val_scenes=("north",)))
    assert nothing_written(tmp_path)
