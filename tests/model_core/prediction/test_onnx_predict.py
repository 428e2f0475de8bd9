"""Prediction from .onnx files: the same rasters as torch, and clear errors for models that do not fit."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import rasterio
from scl_deeplab.model_core.errors import BandCountError, CheckpointError
from scl_deeplab.model_core.net.onnx_export import export_onnx
from scl_deeplab.model_core.prediction import onnx_runtime
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.tests.onnx_models import fitted_blocks, write_raster
from scl_deeplab.tests.recording import RecordingProgress


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_predict")
    found = fitted_blocks(folder)
    with rasterio.open(found["scene"], "r+") as dst:  # a no-data corner
        rgb = dst.read()
        rgb[:, :10, :10] = 0
        dst.write(rgb)
    export_onnx(found["checkpoint"], folder / "fitted.onnx")
    return found | {"onnx": folder / "fitted.onnx"}


def test_onnx_prediction_equals_torch(blocks, tmp_path):
    config = PredictConfig(tiling=TilingConfig(64, 16), precision="float32")
    progress = RecordingProgress()
    results = {}
    for name, model in (("torch", blocks["checkpoint"]), ("onnx", blocks["onnx"])):
        results[name] = predict_scene_from_checkpoint(
            blocks["scene"], model, tmp_path / f"{name}.tif", config, confidence_path=tmp_path / f"{name}_conf.tif",
            progress=progress,
        )
    assert "ONNX Runtime" in results["onnx"].device and results["onnx"].tiles == results["torch"].tiles == 9
    codes_torch, codes_onnx = read(tmp_path / "torch.tif"), read(tmp_path / "onnx.tif")
    assert codes_onnx.shape == (128, 128)
    assert (codes_onnx == codes_torch).mean() >= 0.999
    assert (codes_onnx[:10, :10] == 0).all()
    conf_torch, conf_onnx = read(tmp_path / "torch_conf.tif"), read(tmp_path / "onnx_conf.tif")
    assert (np.abs(conf_onnx.astype(int) - conf_torch) <= 1).mean() >= 0.999
    assert (conf_onnx[:10, :10] == 255).all()
    with rasterio.open(tmp_path / "onnx.tif") as src:
        assert src.colormap(1)[6] == (0, 0, 255, 255)
    assert (tmp_path / "onnx.qml").read_text() == (tmp_path / "torch.qml").read_text()
    assert (tmp_path / "onnx_conf.qml").is_file()


def test_default_tiles_are_the_training_patches_as_with_torch(blocks, tmp_path):
    config = PredictConfig(precision="float32")  # TILE_SIZE 0: as trained (the fixture's 64 px patches)
    results, notes = {}, {}
    for name, model in (("torch", blocks["checkpoint"]), ("onnx", blocks["onnx"])):
        progress = RecordingProgress()
        results[name] = predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / f"{name}.tif", config,
                                                      progress=progress)
        notes[name] = [line for line in progress.lines if line.startswith(("Tiles of", "Predicting"))]
    assert notes["onnx"] == notes["torch"]  # the same tiles, in the same batches (a row of 3 tiles a run)
    assert notes["onnx"][0] == "Tiles of 64 px, the patch size this model was trained on."
    assert "(overlap 8 px, batches of 3)" in notes["onnx"][1]
    assert results["onnx"].tiles == results["torch"].tiles == 9
    assert (read(tmp_path / "onnx.tif") == read(tmp_path / "torch.tif")).mean() >= 0.999


def _conv_model(path, *, bands: int = 3, classes: int = 4, props: dict | None = None, flatten: bool = False):
    """A foreign ONNX model: one 1x1 convolution (optionally pooled to a vector: not segmentation)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).normal(size=(classes, bands, 1, 1)).astype(np.float32), "w"
    )
    nodes = [helper.make_node("Conv", ["x", "w"], ["y" if not flatten else "c"])]
    out_shape = ["n", classes, "h", "w"]
    if flatten:
        nodes += [helper.make_node("GlobalAveragePool", ["c"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
        out_shape = ["n", classes]
    graph = helper.make_graph(
        nodes, "foreign", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", bands, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))
    return path


def test_foreign_model_without_class_table_takes_codes_1_to_n_with_a_warning(blocks, tmp_path):
    model = _conv_model(tmp_path / "foreign.onnx", classes=4)
    progress = RecordingProgress()
    predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif",
                                  PredictConfig(tiling=TilingConfig(64, 8)), progress=progress)
    codes = read(tmp_path / "out.tif")
    assert set(np.unique(codes[10:, 10:])) <= {1, 2, 3, 4}
    assert len(np.unique(codes[10:, 10:])) >= 2
    assert any("no class table" in w and "1-4" in w for w in progress.warnings)


def test_foreign_class_names_map_to_scl_codes(blocks, tmp_path):
    props = {"model_type": "Segmentor", "class_names": {"0": "Water", "1": "Vegetation"},
             "standardization_mean": [0.5, 0.5, 0.5], "standardization_std": [0.25, 0.25, 0.25]}
    model = _conv_model(tmp_path / "named.onnx", classes=2, props=props)
    progress = RecordingProgress()
    # 128 px tiles: a foreign model records no patch size, so smaller tiles would rightly warn.
    predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif",
                                  PredictConfig(tiling=TilingConfig(128, 16)), progress=progress)
    assert set(np.unique(read(tmp_path / "out.tif")[10:, 10:])) <= {4, 6}
    assert progress.warnings == []
    props["tile_size"] = 96  # Deepness's key: by default the file's tile size, not 512 px
    model = _conv_model(tmp_path / "tiled.onnx", classes=2, props=props)
    progress = RecordingProgress()
    result = predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "tiled.tif", progress=progress)
    assert "Tiles of 96 px, the tile size the model's file records." in progress.lines and result.tiles == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flatten": True}, "not a segmentation model"),
        ({"props": {"model_type": "Detector"}}, "is a Detector model, not a segmentation model"),
        ({"classes": 12}, "this plugin writes SCL codes 1-11"),
    ],
)
def test_unfit_models_are_refused(blocks, tmp_path, kwargs, message):
    model = _conv_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(CheckpointError, match=message):
        predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_channel_count_must_match_the_bands(blocks, tmp_path):
    model = _conv_model(tmp_path / "four.onnx", bands=4)
    with pytest.raises(BandCountError, match="expects 4 bands"):
        predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif")
    scene = write_raster(tmp_path / "four.tif", np.full((4, 32, 32), 100, np.uint8))
    with pytest.raises(BandCountError, match="BANDS lists 3 band"):
        predict_scene_from_checkpoint(scene, model, tmp_path / "out.tif", PredictConfig(bands=(1, 2, 3)))
    assert not (tmp_path / "out.tif").exists()


def test_junk_file_is_a_clear_error(blocks, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not an ONNX model that ONNX Runtime can load"):
        predict_scene_from_checkpoint(blocks["scene"], junk, tmp_path / "out.tif")


def test_missing_onnxruntime_names_the_install_command(blocks, tmp_path, monkeypatch):
    onnx_runtime.clear_onnx_cache()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(onnx_runtime.OnnxRuntimeMissing, match="pip install onnxruntime"):
        predict_scene_from_checkpoint(blocks["scene"], blocks["onnx"], tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_fixed_tile_size_is_named(blocks, tmp_path):
    import onnx

    model = _conv_model(tmp_path / "fixed.onnx")
    proto = onnx.load(str(model))
    for dim, value in zip(proto.graph.input[0].type.tensor_type.shape.dim, (1, 3, 32, 32)):
        dim.dim_value = value
    onnx.save(proto, str(model))
    with pytest.raises(CheckpointError, match="takes tiles of exactly 32 x 32 px"):
        predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif",
                                      PredictConfig(tiling=TilingConfig(64, 8)))
    predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "out.tif",
                                  PredictConfig(tiling=TilingConfig(32, 8), batch_size=4))
    assert read(tmp_path / "out.tif").shape == (128, 128)
    result = predict_scene_from_checkpoint(blocks["scene"], model, tmp_path / "auto.tif")  # TILE_SIZE 0: its 32 px
    assert result.tiles == 25 and (read(tmp_path / "auto.tif")[10:, 10:] > 0).all()


def test_session_threads_sleep_when_idle_and_follow_omp_num_threads(blocks, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    options = onnx_runtime.OnnxModel(blocks["onnx"], "cpu").session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
