"""Scene lists, folders and the SCL naming rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scl_deeplab.model_core.data.scenes import (
    Scene,
    find_mask,
    list_entries,
    load_scenes,
    read_scene_list,
    scenes_from_images,
    scenes_in_folder,
    unique_names,
)
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.prediction.batch_predict import read_scene_list as read_predict_list


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_list_entries_skip_blank_lines_and_comments(tmp_path):
    source = tmp_path / "list.txt"
    source.write_text("# scenes\n\n  a.tif , a_scl.tif  \n   # indented comment\nb.tif,b_scl.tif\n", encoding="utf-8")
    assert list_entries(source) == [(3, "a.tif , a_scl.tif"), (5, "b.tif,b_scl.tif")]


def test_scene_list_pairs_are_relative_to_the_list(tmp_path):
    touch(tmp_path / "data" / "a.tif", tmp_path / "data" / "a_scl.tif", tmp_path / "elsewhere" / "b.tif",
          tmp_path / "b_scl.tif")
    source = tmp_path / "data" / "scenes.txt"
    source.write_text(f"# two scenes\na.tif,a_scl.tif\n{tmp_path / 'elsewhere' / 'b.tif'}, ../b_scl.tif\n",
                      encoding="utf-8")
    scenes = read_scene_list(source)
    assert scenes == [
        Scene(tmp_path / "data" / "a.tif", tmp_path / "data" / "a_scl.tif", "a"),
        Scene(tmp_path / "elsewhere" / "b.tif", tmp_path / "b_scl.tif", "b"),
    ]
    assert load_scenes(source) == scenes


def test_scene_list_names_every_missing_file_and_bad_line(tmp_path):
    touch(tmp_path / "a.tif", tmp_path / "a_scl.tif")
    source = tmp_path / "scenes.txt"
    source.write_text("a.tif,a_scl.tif\nb.tif,b_scl.tif\njust_one.tif\na.tif,gone.tif\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_scene_list(source)
    message = str(info.value)
    assert "line 2: " in message and "b.tif and " in message and "b_scl.tif do not exist" in message
    assert "line 3 ('just_one.tif') is not an image,scl pair" in message
    assert "line 4: " in message and "gone.tif does not exist" in message
    assert "line 1" not in message


def test_scene_list_that_is_missing_or_empty(tmp_path):
    with pytest.raises(InputError, match="scene list .*nowhere.txt does not exist"):
        read_scene_list(tmp_path / "nowhere.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(InputError, match="lists no scenes"):
        read_scene_list(tmp_path / "empty.txt")


def test_predict_scene_lists_read_lines_with_the_same_rules(tmp_path):
    touch(tmp_path / "x" / "a.tif", tmp_path / "b.tif")
    source = tmp_path / "x" / "list.txt"
    source.write_text("# predict these\na.tif\n\n../b.tif\n", encoding="utf-8")
    assert read_predict_list(source) == sorted([(tmp_path / "x" / "a.tif").resolve(), (tmp_path / "b.tif").resolve()])


@pytest.mark.parametrize(
    "image,mask",
    [
        ("T29UNU_20221005_TCI_60m.tif", "T29UNU_20221005_SCL_60m.tif"),
        ("T29UNU_20221005_RGB_B04B03B02_60m.tif", "T29UNU_20221005_SCL_60m.tif"),
        ("S2A2A_20170703_022_Barbellino_RGB432B_10.tif", "S2A2A_20170703_022_Barbellino_SCL_10.tif"),
        ("S2B_32TQM_20230704_0_L2A_BANDS_20m.tif", "S2B_32TQM_20230704_0_L2A_SCL_20m.tif"),
        ("train_scene.tif", "train_scl.tif"),
        ("scene.tif", "scl.tif"),
        ("field.tif", "field_SCL.tif"),
        ("field.tiff", "field_scl.tif"),
    ],
)
def test_naming_rule_finds_the_scl(tmp_path, image, mask):
    touch(tmp_path / image, tmp_path / mask, tmp_path / "unrelated_SCL_60m.tif")
    assert find_mask(tmp_path / image) == tmp_path / mask


def test_naming_rule_finds_nothing_without_a_match(tmp_path):
    touch(tmp_path / "scenery.tif", tmp_path / "scl.tif", tmp_path / "TCI_SCL.tif")
    assert find_mask(tmp_path / "scenery.tif") is None  # "scene" only as a whole word


def test_images_pair_with_their_scl_and_selected_scls_are_left_out(tmp_path):
    names = ["A_TCI_60m.tif", "A_SCL_60m.tif", "A_SCL_20m.tif", "b_scene.tif", "b_scl.tif"]
    touch(*(tmp_path / n for n in names))
    scenes = scenes_from_images(tmp_path / n for n in names)
    assert [(s.name, s.image.name, s.mask.name) for s in scenes] == [
        ("A_TCI_60m", "A_TCI_60m.tif", "A_SCL_60m.tif"), ("b_scene", "b_scene.tif", "b_scl.tif")]
    assert scenes_in_folder(tmp_path) == scenes


def test_images_without_an_scl_are_named(tmp_path):
    touch(tmp_path / "A_TCI_60m.tif", tmp_path / "A_SCL_60m.tif", tmp_path / "lonely.tif", tmp_path / "alone.vrt")
    with pytest.raises(InputError, match=r"No SCL found for alone.vrt, lonely.tif: its SCL is the file"):
        scenes_in_folder(tmp_path)


def test_download_folder_is_read_through_its_manifest(tmp_path):
    touch(tmp_path / "i1_TCI_20m.tif", tmp_path / "i1_SCL_20m.tif", tmp_path / "i2_TCI_20m.tif",
          tmp_path / "i2_SCL_20m.tif", tmp_path / "stray_TCI_20m.tif")
    items = [{"id": f"i{k}", "image": f"i{k}_TCI_20m.tif", "scl": f"i{k}_SCL_20m.tif"} for k in (1, 2)]
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "scl-deeplab-l2a-download", "items": items}))
    scenes = load_scenes(tmp_path)
    assert [(s.name, s.image.name, s.mask.name) for s in scenes] == [
        ("i1", "i1_TCI_20m.tif", "i1_SCL_20m.tif"), ("i2", "i2_TCI_20m.tif", "i2_SCL_20m.tif")]
    (tmp_path / "i2_SCL_20m.tif").unlink()
    with pytest.raises(InputError, match="lists files that are missing: i2_SCL_20m.tif"):
        load_scenes(tmp_path)


def test_same_names_get_their_folder():
    scenes = [Scene(Path("/a/x.tif"), Path("/a/s.tif")), Scene(Path("/b/x.tif"), Path("/b/s.tif")),
              Scene(Path("/c/y.tif"), Path("/c/s.tif"))]
    assert [s.name for s in unique_names(scenes)] == ["a_x", "b_x", "y"]
