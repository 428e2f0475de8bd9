"""scldeeplab:makepatches through Processing and the qgis_process wrapper; bad input gets a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException
from rasterio.transform import from_origin
from scl_deeplab.model_core.data.synthetic import ORIGIN, make_sample_scene
from scl_deeplab.tests.recording import RecordingFeedback


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    return make_sample_scene(folder / "scene.tif", folder / "scl.tif", size=256, seed=0)


def run(params: dict, feedback=None) -> dict:
    import processing

    return processing.run("scldeeplab:makepatches", params, feedback=feedback)


def _write(path: Path, data: np.ndarray) -> str:
    count, height, width = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype.name,
                       crs="EPSG:32633", transform=from_origin(*ORIGIN, 20.0, 20.0)) as dst:  # the sample scene's grid
        dst.write(data)
    return str(path)


def test_makepatches_writes_patches_manifest_and_preview(provider, scene, tmp_path):
    out = tmp_path / "patches"
    result = run({"INPUT": str(scene.image), "MASK": str(scene.scl), "PATCH_SIZE": 64, "OUTPUT_FOLDER": str(out)})
    assert Path(result["OUTPUT_INDEX"]) == out / "index.json"
    assert Path(result["OUTPUT_PREVIEW"]) == out / "preview.png" and (out / "preview.png").stat().st_size > 10_000
    manifest = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert manifest["patch_size"] == 64 and manifest["stride"] == 64 and manifest["bands"] == [1, 2, 3]
    assert manifest["split"] == "blocks" and manifest["val_fraction"] == 0.2
    splits = [p["split"] for p in manifest["patches"]]
    assert result["TRAIN_COUNT"] == splits.count("train") and result["VAL_COUNT"] == splits.count("val")
    with rasterio.open(scene.scl) as src:
        codes = src.read(1)
    valid = [(codes[r : r + 64, c : c + 64] > 0).mean() for r in range(0, 256, 64) for c in range(0, 256, 64)]
    assert sum(v >= 0.5 for v in valid) == 15  # the patch in the no-data corner is under half valid
    assert result["TRAIN_COUNT"] + result["VAL_COUNT"] == 15
    assert result["VAL_COUNT"] == pytest.approx(3, abs=1)


def test_makepatches_stride_bands_random_split_and_overwrite(provider, scene, tmp_path):
    out = tmp_path / "patches"
    (out / "images").mkdir(parents=True)  # an earlier run's output: OVERWRITE replaces only that
    (out / "index.json").write_text('{"format": "scl-deeplab-patches"}')
    (out / "images" / "old.txt").write_text("old")
    result = run({
        "INPUT": str(scene.image), "MASK": str(scene.scl), "BANDS": "3,2,1", "PATCH_SIZE": 128, "STRIDE": 64,
        "SPLIT": 1, "VAL_FRACTION": 0.3, "SEED": 2, "OVERWRITE": True, "OUTPUT_FOLDER": str(out),
    })
    manifest = json.loads(Path(result["OUTPUT_INDEX"]).read_text(encoding="utf-8"))
    assert not (out / "images" / "old.txt").exists()
    assert (manifest["stride"], manifest["bands"], manifest["split"], manifest["seed"]) == (64, [3, 2, 1], "random", 2)
    assert (result["TRAIN_COUNT"], result["VAL_COUNT"]) == (6, 3)  # 3 x 3 windows, random takes exactly 30 %


def _refused(params: dict, match: str, out: Path) -> None:
    before = sorted(p.name for p in out.iterdir()) if out.exists() else None
    with pytest.raises(QgsProcessingException, match=match):
        run({**params, "OUTPUT_FOLDER": str(out)})
    after = sorted(p.name for p in out.iterdir()) if out.exists() else None
    assert after == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []


def test_bad_mask_codes_are_named(provider, scene, tmp_path):
    codes = np.full((1, 256, 256), 4, np.uint8)
    codes[0, 10, 10] = 13
    mask = _write(tmp_path / "bad_scl.tif", codes)
    _refused({"INPUT": str(scene.image), "MASK": mask, "PATCH_SIZE": 64}, "codes 13 are not SCL codes", tmp_path / "o")


def test_two_band_scene_is_refused(provider, scene, tmp_path):
    image = _write(tmp_path / "two.tif", np.ones((2, 256, 256), np.uint8))
    _refused({"INPUT": image, "MASK": str(scene.scl), "PATCH_SIZE": 64}, "needs at least 3", tmp_path / "o")


@pytest.mark.parametrize(
    "params,match",
    [
        ({"PATCH_SIZE": 512}, r"Patch size 512 px is larger than the scene \(256 x 256 px\); use at most 256"),
        ({"PATCH_SIZE": 100}, "Patch size 100 px is not a multiple of 8; use e.g. 96 or 104"),
        ({"PATCH_SIZE": 64, "STRIDE": -8}, "Stride -8 px is negative"),
        ({"PATCH_SIZE": 64, "BANDS": "1,x"}, "not band numbers"),
    ],
)
def test_bad_settings_get_a_clear_message(provider, scene, tmp_path, params, match):
    _refused({"INPUT": str(scene.image), "MASK": str(scene.scl), **params}, match, tmp_path / "o")


def test_no_patch_valid_enough_says_how_many_were_tried(provider, scene, tmp_path):
    codes = np.zeros((1, 256, 256), np.uint8)
    codes[0, :16, :16] = 4  # the best 64 px patch is 6.2 % valid
    mask = _write(tmp_path / "sparse_scl.tif", codes)
    _refused({"INPUT": str(scene.image), "MASK": mask, "PATCH_SIZE": 64},
             r"None of the 16 patches has at least 50% valid SCL pixels .*; the best has 6.2%", tmp_path / "o")


def test_non_empty_output_folder_is_refused(provider, scene, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused({"INPUT": str(scene.image), "MASK": str(scene.scl), "PATCH_SIZE": 64}, "is not empty", out)
    assert (out / "notes.txt").read_text() == "mine"


def test_unreadable_file_is_refused(provider, scene, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    _refused({"INPUT": str(broken), "MASK": str(scene.scl), "PATCH_SIZE": 64}, "Cannot read the scene", tmp_path / "o")


def test_makepatches_through_qgis_process(qgis_process_json, scene, tmp_path):
    results = qgis_process_json(
        "scldeeplab:makepatches",
        INPUT=scene.image, MASK=scene.scl, PATCH_SIZE=128, OUTPUT_FOLDER=tmp_path / "patches",
    )
    assert Path(results["OUTPUT_INDEX"]) == tmp_path / "patches" / "index.json"
    manifest = json.loads((tmp_path / "patches" / "index.json").read_text(encoding="utf-8"))
    assert len(manifest["patches"]) == 4 == results["TRAIN_COUNT"] + results["VAL_COUNT"]
    assert results["VAL_COUNT"] == 1
    assert (tmp_path / "patches" / "preview.png").exists()


# --- several scenes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_scenes(tmp_path_factory) -> Path:
    """Three sample scenes named like Download L2A's files, and a list of them."""
    folder = tmp_path_factory.mktemp("three")
    for seed, name in enumerate(("a", "b", "c")):
        make_sample_scene(folder / f"{name}_TCI_20m.tif", folder / f"{name}_SCL_20m.tif", size=128, seed=seed)
    (folder / "scenes.txt").write_text(
        "# image,scl\n" + "".join(f"{n}_TCI_20m.tif,{n}_SCL_20m.tif\n" for n in "abc"), encoding="utf-8")
    return folder


def test_makepatches_scene_list_split_by_scenes(provider, three_scenes, tmp_path):
    feedback = RecordingFeedback()
    out = tmp_path / "patches"
    result = run({"SCENE_LIST": str(three_scenes / "scenes.txt"), "PATCH_SIZE": 64, "SPLIT": 2,
                  "VAL_SCENES": "b_TCI_20m", "OUTPUT_FOLDER": str(out)}, feedback)
    manifest = json.loads((out / "index.json").read_text(encoding="utf-8"))
    assert result["SCENE_COUNT"] == 3 and manifest["split"] == "scenes"
    assert (manifest["train_scenes"], manifest["val_scenes"]) == (["a_TCI_20m", "c_TCI_20m"], ["b_TCI_20m"])
    assert result["VAL_COUNT"] == sum(p["scene"] == "b_TCI_20m" for p in manifest["patches"]) >= 1
    assert result["TRAIN_COUNT"] + result["VAL_COUNT"] == len(manifest["patches"])
    assert "Validation scenes: b_TCI_20m." in feedback.infos


def test_makepatches_many_layers_find_their_scl_by_name(provider, three_scenes, tmp_path):
    layers = [str(p) for p in sorted(three_scenes.glob("*.tif"))]  # the SCLs too: they are recognised
    result = run({"INPUTS": layers, "PATCH_SIZE": 64, "OUTPUT_FOLDER": str(tmp_path / "p")})
    manifest = json.loads(Path(result["OUTPUT_INDEX"]).read_text(encoding="utf-8"))
    assert result["SCENE_COUNT"] == 3
    assert [(s["name"], Path(s["mask"]).name) for s in manifest["scenes"]] == [
        (f"{n}_TCI_20m", f"{n}_SCL_20m.tif") for n in "abc"]
    folder = run({"SCENE_FOLDER": str(three_scenes), "PATCH_SIZE": 64, "OUTPUT_FOLDER": str(tmp_path / "f")})
    assert json.loads(Path(folder["OUTPUT_INDEX"]).read_text(encoding="utf-8"))["scenes"] == manifest["scenes"]


@pytest.mark.parametrize(
    "params,match",
    [
        ({}, "Give the scenes: a true-colour scene with its SCL mask"),
        ({"MASK": "SCL"}, "Give both the true-colour scene and its SCL mask, or neither"),
        ({"INPUT": "IMAGE", "MASK": "SCL", "SCENE_LIST": "LIST"}, "Give the scenes one way only"),
    ],
)
def test_scene_sources_must_be_one(provider, three_scenes, tmp_path, params, match):
    paths = {"IMAGE": str(three_scenes / "a_TCI_20m.tif"), "SCL": str(three_scenes / "a_SCL_20m.tif"),
             "LIST": str(three_scenes / "scenes.txt")}
    _refused({k: paths[v] for k, v in params.items()} | {"PATCH_SIZE": 64}, match, tmp_path / "o")


def test_scene_list_with_a_missing_file_is_refused(provider, three_scenes, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{three_scenes / 'a_TCI_20m.tif'},{three_scenes / 'a_SCL_20m.tif'}\n"
                       f"{three_scenes / 'b_TCI_20m.tif'},{three_scenes / 'gone_SCL.tif'}\n", encoding="utf-8")
    _refused({"SCENE_LIST": str(listing), "PATCH_SIZE": 64}, r"line 2: .*gone_SCL.tif does not exist", tmp_path / "o")


def test_makepatches_scene_folder_through_qgis_process(qgis_process_json, three_scenes, tmp_path):
    results = qgis_process_json(
        "scldeeplab:makepatches", SCENE_FOLDER=three_scenes, PATCH_SIZE=64, SPLIT=2, VAL_FRACTION=0.3, SEED=1,
        OUTPUT_FOLDER=tmp_path / "patches",
    )
    manifest = json.loads((tmp_path / "patches" / "index.json").read_text(encoding="utf-8"))
    assert results["SCENE_COUNT"] == 3 and len(manifest["val_scenes"]) == 1 and len(manifest["train_scenes"]) == 2
    assert results["VAL_COUNT"] == sum(p["scene"] in manifest["val_scenes"] for p in manifest["patches"])
