"""Multispectral input end to end in model_core: six named bands through patches, training and prediction,
and every mismatch between a scene's bands and a model's refused with both lists and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from scl_deeplab.model_core.data.patches import PatchConfig, make_patches
from scl_deeplab.model_core.data.scenes import Scene
from scl_deeplab.model_core.errors import BandCountError, InputError
from scl_deeplab.model_core.evaluation.report import result_figure
from scl_deeplab.model_core.net import checkpoint, input_conv
from scl_deeplab.model_core.prediction.config import PredictConfig
from scl_deeplab.model_core.prediction.predict import clear_model_cache, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.model_core.training.config import TrainConfig
from scl_deeplab.model_core.training.train import train
from scl_deeplab.tests.multiband import SCL_BANDS, write_multiband_scene

SIX = (1, 2, 3, 4, 5, 6)
CONFIG = PredictConfig(tiling=TilingConfig(32, 8), device="cpu", precision="float32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """(scene, its SCL, patches index, 6-band checkpoint): 32 px patches, one epoch of the full network."""
    root = tmp_path_factory.mktemp("multiband")
    image, scl, _ = write_multiband_scene(root / "scene", 96, seed=1)
    result = make_patches(image, scl, root / "patches", PatchConfig(patch_size_px=32, val_fraction=0.3, bands=SIX))
    config = TrainConfig(stage="full", epochs=1, batch_size=2, learning_rate=1e-3, pretrained="none", device="cpu",
                         precision="float32", seed=0)
    train(result.index, config, root / "model.pt")
    yield image, scl, result.index, root / "model.pt"
    clear_model_cache()


def test_patches_keep_six_named_bands_as_reflectance(trained):
    _, _, index, _ = trained
    manifest = json.loads(index.read_text(encoding="utf-8"))
    assert manifest["band_names"] == list(SCL_BANDS) and manifest["bands"] == [1, 2, 3, 4, 5, 6]
    assert (manifest["dtype"], manifest["input_scale"]) == ("uint16", 10000.0)  # reflectance, not TCI's 0.25
    with rasterio.open(index.parent / manifest["patches"][0]["image"]) as src:
        assert src.count == 6 and src.descriptions == SCL_BANDS


def test_checkpoint_records_names_order_and_the_patches_own_normalisation(trained):
    _, _, index, model = trained
    payload = checkpoint.load_checkpoint(model)
    spec = checkpoint.input_from_meta(payload["meta"])
    assert spec.band_order == SCL_BANDS and (spec.dtype, spec.scale) == ("uint16", 10000.0)
    assert payload["state_dict"][input_conv.FIRST_CONV].shape[1] == 6
    manifest = json.loads(index.read_text(encoding="utf-8"))
    train_images = [index.parent / p["image"] for p in manifest["patches"] if p["split"] == "train"]
    stacked = np.concatenate([rasterio.open(p).read().reshape(6, -1) for p in train_images], axis=1) / 10000.0
    assert np.allclose(spec.mean, stacked.mean(axis=1), atol=1e-6)
    assert np.allclose(spec.std, stacked.std(axis=1), atol=1e-6)
    assert spec.mean[3] > spec.mean[4] > spec.mean[5] > 0  # B8A above B11 above B12 in these scenes


def test_six_band_model_predicts_the_scene_it_was_made_from(trained, tmp_path):
    image, scl, _, model = trained
    result = predict_scene_from_checkpoint(image, model, tmp_path / "pred.tif", CONFIG)
    with rasterio.open(result.output) as out, rasterio.open(scl) as ref:
        codes, truth = out.read(1), ref.read(1)
    assert codes.shape == truth.shape == (96, 96)
    assert set(np.unique(codes)) <= {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
    figure = result_figure(result.output, scl, image=image)
    assert figure.axes[0].get_title() == "True colour"  # red, green, blue found among the six bands by name


def test_bands_are_found_by_name_in_another_scene_layout(trained, tmp_path):
    _, _, _, model = trained
    names = ("B8A", "B04", "B11", "B03", "B12", "B02", "B05")
    image, _, _ = write_multiband_scene(tmp_path / "mixed", 64, names=names, seed=2)
    predict_scene_from_checkpoint(image, model, tmp_path / "auto.tif", CONFIG)
    by_numbers = PredictConfig(tiling=CONFIG.tiling, device="cpu", precision="float32", bands=(6, 4, 2, 1, 3, 5))
    predict_scene_from_checkpoint(image, model, tmp_path / "numbers.tif", by_numbers)
    with rasterio.open(tmp_path / "auto.tif") as a, rasterio.open(tmp_path / "numbers.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))


@pytest.mark.parametrize("names, bands, match", [
    (SCL_BANDS[:3], None, r"has 3 band\(s\) \(B02, B03, B04\), but the model expects 6 bands "
                          r"\(B02, B03, B04, B8A, B11, B12\)"),
    (("B04", "B03", "B02", "B8A", "B11", "B12"), (1, 2, 3, 4, 5, 6),
     r"bands B04, B03, B02, B8A, B11, B12, but B02, B03, B04, B8A, B11, B12 are expected \(the same bands in "
     r"another order\).*BANDS=3,2,1,4,5,6 here"),
    (("B02", "B03", "B04", "B05", "B06", "B07"), None, r"bands B02, B03, B04, B05, B06, B07, but B02, B03, B04, "
                                                      r"B8A, B11, B12 are expected"),
])
def test_a_scene_with_other_bands_is_refused_listing_both_and_nothing_written(trained, tmp_path, names, bands, match):
    _, _, _, model = trained
    image, _, _ = write_multiband_scene(tmp_path / "other", 32, names=names)
    config = PredictConfig(tiling=CONFIG.tiling, device="cpu", bands=bands)
    with pytest.raises(BandCountError, match=match):
        predict_scene_from_checkpoint(image, model, tmp_path / "pred.tif", config)
    assert not (tmp_path / "pred.tif").exists()


def test_scenes_with_other_bands_or_data_types_cannot_share_a_dataset(tmp_path):
    a = Scene(*write_multiband_scene(tmp_path / "a", 64, seed=1)[:2], "a")
    b = Scene(*write_multiband_scene(tmp_path / "b", 64, names=("B02", "B03", "B04", "B8A", "B12", "B11"))[:2], "b")
    with pytest.raises(InputError, match=r"b: its bands are B02, B03, B04, B8A, B12, B11, those of a B02, B03, "
                                         r"B04, B8A, B11, B12; all scenes need the same bands in the same order"):
        make_patches([a, b], tmp_path / "out", PatchConfig(patch_size_px=32, bands=SIX))
    assert not (tmp_path / "out").exists()
    eight = tmp_path / "c" / "scene.tif"
    eight.parent.mkdir()
    with rasterio.open(a.image) as src:
        profile = {**src.profile, "dtype": "uint8"}
        pixels = (src.read() // 40).astype(np.uint8)
    with rasterio.open(eight, "w", **profile) as dst:
        dst.write(pixels)
        dst.descriptions = SCL_BANDS
    c = Scene(eight, a.mask, "c")
    with pytest.raises(InputError, match=r"c: its bands are 8-bit \(uint8\), those of a 16-bit \(uint16\)"):
        make_patches([a, c], tmp_path / "out", PatchConfig(patch_size_px=32, bands=SIX))
    assert not (tmp_path / "out").exists()


def test_a_three_band_checkpoint_predicts_exactly_as_before(deeplab_checkpoint, tmp_path):
    """The checkpoint of before multispectral input (red, green, blue, no band names) gives what its model gives."""
    from scl_deeplab.model_core.data.radiometry import to_unit

    rng = np.random.default_rng(0)
    raw = rng.integers(1, 255, size=(3, 64, 64), dtype=np.uint8)
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8", "crs": "EPSG:32631",
               "transform": rasterio.transform.from_origin(0, 0, 10, 10)}
    with rasterio.open(tmp_path / "tci.tif", "w", **profile) as dst:
        dst.write(raw)
    config = PredictConfig(tiling=TilingConfig(64, 0), device="cpu", precision="float32")
    predict_scene_from_checkpoint(tmp_path / "tci.tif", deeplab_checkpoint, tmp_path / "pred.tif", config)
    payload = checkpoint.load_checkpoint(deeplab_checkpoint)
    spec = checkpoint.input_from_meta(payload["meta"])
    assert spec.band_order == ("red", "green", "blue") and "band_names" not in payload["meta"]
    model, _ = checkpoint.load_model(deeplab_checkpoint)
    assert input_conv.input_bands(model) == 3
    mean, std = torch.tensor(spec.mean).view(3, 1, 1), torch.tensor(spec.std).view(3, 1, 1)
    x = (torch.from_numpy(to_unit(raw, 255.0)) - mean) / std
    with torch.no_grad():
        logits = model(x[None].float())["out"][0]
    expected = logits.argmax(0).numpy() + 1
    with rasterio.open(tmp_path / "pred.tif") as out:
        got = out.read(1)
    margin = logits.topk(2, dim=0).values
    clear = (margin[0] - margin[1]).numpy() > 1e-3  # BatchNorm folding may reorder near-ties, nothing else
    assert clear.mean() > 0.99 and np.array_equal(got[clear], expected[clear])


def test_pictures_are_true_colour_from_the_named_bands_or_a_false_colour_composite(tmp_path):
    from scl_deeplab.model_core.evaluation.plotting import band_picture

    _, _, pixels = write_multiband_scene(tmp_path, 32, seed=4)
    title, picture = band_picture(pixels, SCL_BANDS, "uint16")
    assert title == "True colour" and picture.shape == (32, 32, 3)
    assert np.allclose(picture[..., 0], np.clip(pixels[2] / 2500.0, 0, 1))  # red is B04, the third band
    title, picture = band_picture(pixels[3:], SCL_BANDS[3:], "uint16")
    assert title == "False colour (B8A, B11, B12)" and picture.shape == (32, 32, 3)
    assert picture.min() == 0.0 and picture.max() == 1.0  # each band stretched to its 2-98 %
    result = make_patches(*write_multiband_scene(tmp_path / "nir", 64)[:2], tmp_path / "patches",
                          PatchConfig(patch_size_px=32, bands=(4, 5, 6), val_fraction=0.25))
    assert result.preview.stat().st_size > 0
    assert json.loads(result.index.read_text())["band_names"] == ["B8A", "B11", "B12"]
