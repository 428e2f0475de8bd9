"""Tiled whole-scene prediction: seams, georeferencing, shapes, input checks, cache, cancel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scl_deeplab.model_core import scl, styles
from scl_deeplab.model_core.errors import BandCountError, Canceled, CheckpointError, InputError, OutputError
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.prediction import predict
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig, plan_tiles
from scl_deeplab.tests.recording import RecordingProgress

CRS = "EPSG:32633"
TRANSFORM = from_origin(399960.0, 5000040.0, 20.0, 20.0)
SPEC = checkpoint.ModelInput.rgb("uint8", 255.0, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
META = checkpoint.input_to_meta(SPEC)
RECEPTIVE_RADIUS_PX = 2  # two stacked 3x3 convolutions


class TinyFcn(torch.nn.Module):
    """A small fully convolutional net with DeepLab's {"out": logits} contract."""

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        pad = kernel // 2
        self.a = torch.nn.Conv2d(3, 8, kernel, padding=pad)
        self.b = torch.nn.Conv2d(8, scl.NUM_CLASSES, kernel, padding=pad)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.b(torch.relu(self.a(x)))}


def write_scene(path: Path, width: int, height: int, *, bands: int = 3, dtype: str = "uint8", seed: int = 0,
                nodata: float | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 255 if dtype == "uint8" else 4000
    data = rng.integers(1, top, size=(bands, height, width)).astype(dtype)
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype=dtype, crs=CRS,
                   transform=TRANSFORM, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def whole_scene(model: torch.nn.Module, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and probabilities of the whole scene in one forward pass, normalised as SPEC says."""
    x = (raw.astype(np.float32) / 255.0 - np.array(SPEC.mean, np.float32)[:, None, None]) / np.array(
        SPEC.std, np.float32
    )[:, None, None]
    with torch.no_grad():
        probs = model(torch.from_numpy(x)[None])["out"].softmax(1)[0].numpy()
    return scl.index_to_code(probs.argmax(0)), probs


def near_inner_tile_edges(width: int, height: int, tile: int, overlap: int, radius: int) -> np.ndarray:
    """True within ``radius`` px inside a tile edge that is not the scene's edge."""
    near = np.zeros((height, width), bool)
    for t in plan_tiles(width, height, tile, overlap):
        rows, cols = t.slices
        if t.row_off > 0:
            near[t.row_off : t.row_off + radius, cols] = True
        if t.row_off + t.height < height:
            near[t.row_off + t.height - radius : t.row_off + t.height, cols] = True
        if t.col_off > 0:
            near[rows, t.col_off : t.col_off + radius] = True
        if t.col_off + t.width < width:
            near[rows, t.col_off + t.width - radius : t.col_off + t.width] = True
    return near


def config(tile: int = 64, overlap: int = 16, **kwargs) -> PredictConfig:
    return PredictConfig(tiling=TilingConfig(tile, overlap), precision="float32", **kwargs)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


# Shapes users hit: non-square, not a multiple of the step, smaller than a tile (one or both axes).
@pytest.mark.parametrize("width,height", [(200, 150), (173, 97), (40, 30), (150, 50)])
def test_tiled_prediction_equals_whole_scene_prediction_away_from_tile_edges(tmp_path, width, height):
    # Tolerance: the tiled result is the whole-scene result exactly (codes identical, confidence
    # within 1 % rounding) everywhere except within the model's receptive radius (2 px) inside an
    # inner tile edge. There the tile saw zero padding instead of its neighbour; the blend window
    # gives those pixels a small weight (< 6 %), so codes can still flip where two classes are near a tie.
    raw = write_scene(tmp_path / "scene.tif", width, height)
    model = TinyFcn().eval()
    result = predict_scene(tmp_path / "scene.tif", model, META, tmp_path / "pred.tif", config(),
                           confidence_path=tmp_path / "conf.tif")
    tiled, conf = read(tmp_path / "pred.tif"), read(tmp_path / "conf.tif")
    expected, probs = whole_scene(model, raw)
    assert tiled.shape == (height, width) and (result.width, result.height) == (width, height)
    far = ~near_inner_tile_edges(width, height, 64, 16, RECEPTIVE_RADIUS_PX)
    assert (tiled[far] == expected[far]).all()
    assert np.abs(conf[far].astype(int) - np.rint(probs.max(0) * 100)[far]).max() <= 1
    assert (tiled == expected).mean() > 0.995


def test_output_keeps_grid_nodata_colours_and_style(tmp_path):
    raw = write_scene(tmp_path / "scene.tif", 300, 260)
    with rasterio.open(tmp_path / "scene.tif", "r+") as dst:  # a no-data corner and one dark valid pixel
        raw[:, :20, :30] = 0
        raw[0, 100, 100] = 0
        dst.write(raw)
    model = TinyFcn().eval()
    predict_scene(tmp_path / "scene.tif", model, META, tmp_path / "pred.tif", config(128, 16))
    with rasterio.open(tmp_path / "pred.tif") as out, rasterio.open(tmp_path / "scene.tif") as src:
        assert out.crs == src.crs and out.transform == src.transform and out.shape == src.shape
        assert out.dtypes[0] == "uint8" and out.nodata == 0
        assert out.profile["tiled"] and out.compression.name == "deflate"
        assert out.colormap(1)[4] == (0, 160, 0, 255) and out.colormap(1)[6] == (0, 0, 255, 255)
        codes = out.read(1)
    assert (codes[:20, :30] == 0).all()
    assert codes[100, 100] != 0  # one band 0 is a dark pixel, not no data
    assert set(np.unique(codes[20:])) <= set(scl.learned_codes())
    assert (tmp_path / "pred.qml").read_text() == styles.scl_qml()
    # Row bands (flushed at rows 112, 132, 260) cut across the file's 256 x 256 blocks: still the right codes.
    expected, _ = whole_scene(model, raw)
    far = ~near_inner_tile_edges(300, 260, 128, 16, RECEPTIVE_RADIUS_PX)
    far[:20, :30] = False
    far[100, 100] = False
    assert (codes[far] == expected[far]).all()


def test_nodata_value_of_the_input_becomes_code_0(tmp_path):
    raw = write_scene(tmp_path / "scene.tif", 80, 70, nodata=7)
    with rasterio.open(tmp_path / "scene.tif", "r+") as dst:
        raw[:, 10:20, 10:20] = 7
        dst.write(raw)
    predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "pred.tif", config(),
                  confidence_path=tmp_path / "conf.tif")
    codes, conf = read(tmp_path / "pred.tif"), read(tmp_path / "conf.tif")
    assert (codes[10:20, 10:20] == 0).all() and (codes != 0).sum() == 80 * 70 - 100
    assert (conf[10:20, 10:20] == 255).all() and conf[30:].max() <= 100
    assert "singlebandgray" in (tmp_path / "conf.qml").read_text()


def test_band_order_and_normalisation_come_from_the_checkpoint(tmp_path):
    # A 1x1 model sees each pixel alone, so the result must equal the by-hand computation.
    raw4 = write_scene(tmp_path / "scene.tif", 50, 40, bands=4)
    model = TinyFcn(kernel=1).eval()
    predict_scene(tmp_path / "scene.tif", model, META, tmp_path / "pred.tif", config(bands=(3, 1, 4)))
    expected, _ = whole_scene(model, raw4[[2, 0, 3]])
    assert (read(tmp_path / "pred.tif") == expected).all()


def test_extent_predicts_only_that_window_on_its_own_grid(tmp_path):
    raw = write_scene(tmp_path / "scene.tif", 120, 100)
    model = TinyFcn(kernel=1).eval()
    # columns 30..90 and rows 20..70 of the scene
    left, top = TRANSFORM.c + 30 * 20, TRANSFORM.f - 20 * 20
    extent = (left, top - 50 * 20, left + 60 * 20, top)
    predict_scene(tmp_path / "scene.tif", model, META, tmp_path / "pred.tif", config(extent=extent))
    with rasterio.open(tmp_path / "pred.tif") as out:
        assert out.shape == (50, 60)
        assert (out.transform.c, out.transform.f) == (left, top)
        codes = out.read(1)
    expected, _ = whole_scene(model, raw)
    assert (codes == expected[20:70, 30:90]).all()


@pytest.mark.parametrize(
    "bands,dtype,chosen,error,match",
    [
        (1, "uint8", None, BandCountError, "has 1 band.*expects 3 bands \\(red, green, blue\\) of type uint8"),
        (3, "uint16", None, InputError, "holds uint16 values.*trained on 3 bands"),
        (4, "uint8", (1, 2), BandCountError, "BANDS lists 2 band"),
        (3, "uint8", (1, 2, 5), BandCountError, "band\\(s\\) \\[5\\] do not exist"),
    ],
)
def test_scene_the_model_cannot_read_is_refused_and_nothing_written(tmp_path, bands, dtype, chosen, error, match):
    write_scene(tmp_path / "scene.tif", 40, 40, bands=bands, dtype=dtype)
    with pytest.raises(error, match=match):
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "pred.tif", config(bands=chosen))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_bad_tiling_is_refused_before_anything_is_written(tmp_path):
    write_scene(tmp_path / "scene.tif", 40, 40)
    for bad in (config(60, 8), config(64, 32)):
        with pytest.raises(InputError):
            predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "pred.tif", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_unwritable_output_is_refused(tmp_path):
    # A path under a regular file cannot be created, even by root (tests may run as root).
    write_scene(tmp_path / "scene.tif", 40, 40)
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(OutputError, match="Choose another output path"):
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "blocker" / "pred.tif", config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "scene.tif"]


def test_output_that_is_the_scene_or_the_other_output_is_refused_and_the_scene_kept(tmp_path, deeplab_checkpoint):
    scene = tmp_path / "scene.tif"
    write_scene(scene, 40, 40)
    before = scene.read_bytes()
    with pytest.raises(InputError, match="is the input scene: writing it would overwrite that input"):
        predict_scene(scene, TinyFcn().eval(), META, tmp_path / "." / "scene.tif", config())
    with pytest.raises(InputError, match="is the input model"):
        predict_scene_from_checkpoint(scene, deeplab_checkpoint, deeplab_checkpoint, config())
    with pytest.raises(InputError, match="outputs prediction and confidence are the same file"):
        predict_scene(scene, TinyFcn().eval(), META, tmp_path / "pred.tif", config(),
                      confidence_path=tmp_path / "pred.tif")
    assert scene.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_cancel_stops_between_batches_and_leaves_no_file(tmp_path):
    write_scene(tmp_path / "scene.tif", 200, 150)
    progress = RecordingProgress(cancel_after_checks=2)
    with pytest.raises(Canceled):
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "pred.tif", config(batch_size=2),
                      confidence_path=tmp_path / "conf.tif", progress=progress)
    assert progress.percents == [100 * 2 / 12, 100 * 4 / 12]  # 12 tiles, stopped after two batches
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_default_batch_is_one_512_px_tile_of_pixels_on_a_cpu_and_an_explicit_one_is_kept(tmp_path):
    write_scene(tmp_path / "scene.tif", 200, 150)  # 12 tiles of 64 px with 16 px overlap, in 3 rows of 4
    # Batches stay within a row of tiles: 64 px tiles batch 64 at a time by default, so one batch per row.
    for batch_size, checks in ((1, 12), (0, 3), (5, 3)):
        progress = RecordingProgress()
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / f"pred_{batch_size}.tif",
                      config(batch_size=batch_size), progress=progress)
        assert len(progress.percents) == checks  # one progress step per batch
    assert predict.tiles_per_batch(0, torch.device("cpu")) == 1  # a 512 px tile fills a CPU's caches alone
    assert predict.tiles_per_batch(0, torch.device("cpu"), 64) == 64
    assert predict.tiles_per_batch(0, torch.device("cuda")) == 4
    with pytest.raises(InputError, match="0 \\(auto\\) or more"):
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "bad.tif", config(batch_size=-1))


def test_batch_of_scenes_loads_the_checkpoint_once(tmp_path, deeplab_checkpoint, monkeypatch):
    loads = []
    real = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    predict.clear_model_cache()
    for name, (w, h) in {"a": (96, 80), "b": (80, 96)}.items():
        write_scene(tmp_path / f"{name}.tif", w, h, seed=len(name))
        result = predict_scene_from_checkpoint(tmp_path / f"{name}.tif", deeplab_checkpoint, tmp_path / f"{name}_pred.tif",
                                               config(64, 8, device="cpu"))
        codes = read(tmp_path / f"{name}_pred.tif")
        assert codes.shape == (h, w) and result.tiles == 4
        assert set(np.unique(codes)) <= set(scl.learned_codes())
    assert len(loads) == 1
    # A rewritten checkpoint (new modification time) is loaded again.
    deeplab_checkpoint.touch()
    predict_scene_from_checkpoint(tmp_path / "a.tif", deeplab_checkpoint, tmp_path / "again.tif",
                                  config(64, 8, device="cpu"))
    assert len(loads) == 2
    predict.clear_model_cache()


def test_file_that_is_not_a_checkpoint_is_refused_and_nothing_written(tmp_path):
    write_scene(tmp_path / "scene.tif", 40, 40)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not an SCL DeepLab checkpoint"):
        predict_scene_from_checkpoint(tmp_path / "scene.tif", tmp_path / "model.pt", tmp_path / "pred.tif", config())
    with pytest.raises(CheckpointError, match="does not exist"):
        predict_scene_from_checkpoint(tmp_path / "scene.tif", tmp_path / "none.pt", tmp_path / "pred.tif", config())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "scene.tif"]


def test_command_line_predicts_two_scenes(tmp_path, deeplab_checkpoint, capsys):
    import json

    from scl_deeplab.model_core.cli.main import main

    for name in ("a", "b"):
        write_scene(tmp_path / f"{name}.tif", 72, 64, seed=3)
    code = main(["predict", "--input", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--model",
                 str(deeplab_checkpoint), "--tile-size", "64", "--overlap", "8", "--device", "cpu", "--precision",
                 "float32", "--output", str(tmp_path / "a_pred.tif"), str(tmp_path / "b_pred.tif")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["tiles"] for p in summary["predictions"]] == [2, 2]
    # Same pixels, same model: the same codes, whichever scene.
    assert (read(tmp_path / "a_pred.tif") == read(tmp_path / "b_pred.tif")).all()
    assert main(["predict", "--input", str(tmp_path / "a.tif"), "--model", str(deeplab_checkpoint), "--tile-size",
                 "60", "--output", str(tmp_path / "bad.tif")]) == 1
    assert not (tmp_path / "bad.tif").exists()


def test_full_disk_is_an_error_and_keeps_the_earlier_prediction(tmp_path):
    from scl_deeplab.tests.full_disk import fill, tiny_disk

    write_scene(tmp_path / "scene.tif", 300, 300)
    with tiny_disk(tmp_path / "disk", 1024) as disk:
        predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, disk / "pred.tif", config(128, 16))
        before = read(disk / "pred.tif")
        fill(disk, 24)  # room for one prediction's header, not its tiles
        with pytest.raises(OutputError, match=f"No space left on {disk}") as caught:
            predict_scene(tmp_path / "scene.tif", TinyFcn(kernel=1).eval(), META, disk / "pred.tif",
                          config(128, 16), confidence_path=disk / "conf.tif")
        assert (read(disk / "pred.tif") == before).all()
        assert sorted(p.name for p in disk.iterdir()) == ["filler.bin", "pred.qml", "pred.tif"]
    print(caught.value)


def test_nan_in_a_float_scene_is_no_data_and_does_not_spread(tmp_path):
    meta = {"input": {**META["input"], "dtype": "float32", "scale": 1.0}}
    rng = np.random.default_rng(3)
    clean = rng.uniform(0.05, 1.0, (3, 160, 160)).astype(np.float32)
    clean[:, 60:100, 60:100] = 0.0  # the same block as no data the usual way
    holed = clean.copy()
    holed[:, 60:100, 60:100] = np.nan
    holed[1, 10, 10] = np.nan  # one band NaN is no data too
    clean[:, 10, 10] = 0.0
    profile = dict(driver="GTiff", width=160, height=160, count=3, dtype="float32", crs=CRS, transform=TRANSFORM)
    for name, data in (("clean", clean), ("holed", holed)):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(data)
        predict_scene(tmp_path / f"{name}.tif", TinyFcn().eval(), meta, tmp_path / f"{name}_scl.tif", config(64, 16),
                      confidence_path=tmp_path / f"{name}_conf.tif")
    codes = read(tmp_path / "holed_scl.tif")
    assert (codes[60:100, 60:100] == 0).all() and codes[10, 10] == 0
    assert (codes == read(tmp_path / "clean_scl.tif")).all()
    assert (read(tmp_path / "holed_conf.tif") == read(tmp_path / "clean_conf.tif")).all()
    assert (codes != 0).sum() == 160 * 160 - 40 * 40 - 1


def test_tiles_below_128_px_and_the_patch_size_warn_and_larger_ones_do_not(tmp_path):
    write_scene(tmp_path / "scene.tif", 256, 256)
    trained_64 = {**META, "patch_size": 64}
    small, as_trained, large = RecordingProgress(), RecordingProgress(), RecordingProgress()
    predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), trained_64, tmp_path / "a.tif", config(32, 8),
                  progress=small)
    predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), trained_64, tmp_path / "b.tif", config(64, 16),
                  progress=as_trained)
    predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "c.tif", config(128, 16), progress=large)
    count = len(plan_tiles(256, 256, 32, 8))
    assert len(small.warnings) == 1 and "Tiles of 32 px" in small.warnings[0] and f"{count} of them" in small.warnings[0]
    assert as_trained.warnings == [] and large.warnings == []
    unknown = RecordingProgress()  # META records no patch size: 64 px tiles are small
    predict_scene(tmp_path / "scene.tif", TinyFcn().eval(), META, tmp_path / "d.tif", config(64, 16), progress=unknown)
    assert len(unknown.warnings) == 1 and "Tiles of 64 px" in unknown.warnings[0] and "25 of them" in unknown.warnings[0]


def test_a_scene_cut_short_is_named_as_damaged_and_nothing_written(tmp_path):
    from scl_deeplab.model_core.errors import RasterReadError

    scene = tmp_path / "scene.tif"
    write_scene(scene, 200, 200)
    with open(scene, "r+b") as f:
        f.truncate(scene.stat().st_size // 2)
    with pytest.raises(RasterReadError, match=f"raster {scene} is damaged"):
        predict_scene(scene, TinyFcn().eval(), META, tmp_path / "pred.tif", config(64, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
