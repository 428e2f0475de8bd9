"""The patches manifest: one typed reader and writer, version 1 still read."""

from __future__ import annotations

import json

import pytest
from scl_deeplab.model_core.data.manifest import FORMAT, VERSION, Manifest, PatchRecord, SceneRecord
from scl_deeplab.model_core.errors import ManifestError


def sample(tmp_path) -> Manifest:
    window = {"col_off": 0, "row_off": 32, "width": 32, "height": 32}
    patches = tuple(
        PatchRecord(f"s{i}_r00032_c00000", tmp_path / "images" / f"p{i}.tif", tmp_path / "masks" / f"p{i}.tif",
                    "train" if i else "val", scene=f"s{i}", window=window, bounds=(1.0, 2.0, 3.0, 4.0),
                    valid_fraction=0.75, histogram={"0": 256, "4": 768})
        for i in range(3)
    )
    scenes = tuple(
        SceneRecord(f"s{i}", f"/data/s{i}.tif", f"/data/s{i}_scl.tif", split="train" if i else "val", width=64,
                    height=96, crs="EPSG:32633", train_patches=int(i > 0), val_patches=int(i == 0),
                    class_histogram={"total": {"0": 256, "4": 768}}, unknown_code_pixels=7 * i)
        for i in range(3)
    )
    return Manifest(tmp_path / "index.json", 32, "uint16", 2500.0, patches, stride=16, bands=(3, 2, 1),
                    crs="EPSG:32633", split="scenes", seed=5, val_fraction=0.3, min_valid_fraction=0.5,
                    class_histogram={"total": {"0": 768, "4": 2304}}, scenes=scenes)


def test_round_trip_through_disk_keeps_everything(tmp_path):
    manifest = sample(tmp_path)
    manifest.save()
    data = json.loads((tmp_path / "index.json").read_text(encoding="utf-8"))
    assert (data["format"], data["version"]) == (FORMAT, VERSION) == ("scl-deeplab-patches", 2)
    assert data["patches"][1]["image"] == "images/p1.tif" and data["patches"][1]["scene"] == "s1"
    assert (data["train_scenes"], data["val_scenes"]) == (["s1", "s2"], ["s0"])
    assert "source" not in data  # only a one-scene manifest repeats version 1's key
    assert Manifest.load(tmp_path) == manifest
    assert [p.id for p in manifest.train] == ["s1_r00032_c00000", "s2_r00032_c00000"]
    assert [p.scene for p in manifest.val] == ["s0"]


def test_save_elsewhere_keeps_paths_relative_to_the_manifest(tmp_path):
    manifest = sample(tmp_path)
    (tmp_path / "staging").mkdir()
    manifest.save(tmp_path / "staging" / "index.json")
    data = json.loads((tmp_path / "staging" / "index.json").read_text(encoding="utf-8"))
    assert data["patches"][0]["mask"] == "masks/p0.tif"


def test_version_1_manifest_loads_with_its_one_scene(tmp_path):
    data = {
        "format": FORMAT, "version": 1, "patch_size": 32, "stride": 32, "bands": [1, 2, 3], "dtype": "uint8",
        "crs": "EPSG:32633", "source": {"image": "/data/scene.tif", "mask": "/data/scl.tif"}, "split": "blocks",
        "patches": [{"id": "r00000_c00000", "image": "images/r00000_c00000.tif", "mask": "masks/r00000_c00000.tif",
                     "split": "train", "window": {"col_off": 0, "row_off": 0, "width": 32, "height": 32},
                     "histogram": {"4": 1024}}],
    }
    (tmp_path / "index.json").write_text(json.dumps(data), encoding="utf-8")
    manifest = Manifest.load(tmp_path / "index.json")
    assert manifest.input_scale == 255.0  # from the dtype when missing
    assert [(s.name, s.image, s.mask) for s in manifest.scenes] == [("scene", "/data/scene.tif", "/data/scl.tif")]
    assert manifest.train[0].scene == "scene" and manifest.train[0].image == tmp_path / "images/r00000_c00000.tif"
    assert manifest.to_dict()["source"] == {"image": "/data/scene.tif", "mask": "/data/scl.tif"}


@pytest.mark.parametrize(
    "text,match",
    [
        ('{"type": "FeatureCollection"}', "is not a patches manifest"),
        ("[1, 2]", "is not a patches manifest"),
        ("{not json", "cannot be read as a patches manifest"),
        (json.dumps({"format": FORMAT, "patch_size": 32, "patches": [{"id": "a", "mask": "m.tif"}]}),
         "is damaged: a patch entry lacks 'image'"),
        (json.dumps({"format": FORMAT, "patch_size": 32, "patches": [
            {"image": "a.tif", "mask": "m.tif", "window": {"col_off": 0, "row_off": 0, "width": 16, "height": 16}}]}),
         r"mixes patch sizes \(16x16; patch_size says 32\)"),
    ],
)
def test_bad_manifests_are_named(tmp_path, text, match):
    (tmp_path / "index.json").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        Manifest.load(tmp_path / "index.json")


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="does not exist. Run Make patches first"):
        Manifest.load(tmp_path / "nowhere")


def test_merge_joins_patches_scenes_and_histograms(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = sample(tmp_path / "a"), sample(tmp_path / "b")
    merged = Manifest.merge([a, b])
    assert merged.path == a.path and len(merged.patches) == 6 and len(merged.train) == 4
    assert [p.image.parent.parent.name for p in merged.patches] == ["a"] * 3 + ["b"] * 3
    assert merged.class_histogram == {"total": {"0": 1536, "4": 4608}}
    assert [s.name for s in merged.scenes] == ["s0", "s1", "s2"] * 2
    merged.save()
    again = Manifest.load(a.path)
    assert [p.image for p in again.patches] == [p.image for p in merged.patches]  # b's files as absolute paths


@pytest.mark.parametrize(
    "change,match",
    [
        ({"bands": (1, 2, 3)}, r"different band orders \(3,2,1 and 1,2,3\)"),
        ({"patch_size": 64}, r"different patch sizes \(32 and 64\)"),
        ({"dtype": "uint8", "input_scale": 255.0}, r"different data types \(uint16 and uint8\)"),
    ],
)
def test_merge_refuses_manifests_that_disagree(tmp_path, change, match):
    from dataclasses import replace

    a = sample(tmp_path)
    with pytest.raises(ManifestError, match=match):
        Manifest.merge([a, replace(a, path=tmp_path / "other" / "index.json", **change)])
