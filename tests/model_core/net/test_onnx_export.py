"""Export to ONNX: the graph equals torch, the metadata serves us and Deepness, int8 stays faithful."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from scl_deeplab.model_core import scl
from scl_deeplab.model_core.errors import InputError
from scl_deeplab.model_core.net.checkpoint import load_model
from scl_deeplab.model_core.net.onnx_export import export_onnx
from scl_deeplab.model_core.prediction.onnx_metadata import KEY
from scl_deeplab.model_core.prediction.onnx_runtime import OnnxModel
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.tests.models import META, write_random_deeplab
from scl_deeplab.tests.onnx_models import SIDE, fitted_blocks


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_export")
    checkpoint = write_random_deeplab(folder / "random.pt")
    result = export_onnx(checkpoint, folder / "random.onnx")
    return checkpoint, result


def test_export_equals_torch_within_1e_4_on_random_tiles(exported):
    checkpoint, result = exported
    net, _ = load_model(checkpoint)
    session = OnnxModel(result.output)
    rng = np.random.default_rng(1)
    for shape in ((2, 3, 48, 40), (1, 3, 64, 64)):  # batch, height and width are dynamic
        x = rng.normal(size=shape).astype(np.float32)
        with torch.no_grad():
            expected = net(torch.from_numpy(x))["out"].softmax(dim=1).numpy()
        got = session.run(x)
        assert got.shape == (shape[0], scl.NUM_CLASSES, *shape[2:])
        assert np.abs(got - expected).max() < 1e-4
    assert result.precision == "float32"


def test_metadata_holds_ours_and_the_keys_deepness_reads(exported):
    import onnx

    _, result = exported
    props = {p.key: p.value for p in onnx.load(str(result.output), load_external_data=False).metadata_props}
    ours = json.loads(props[KEY])
    assert ours["format"] == "scl-deeplab-onnx" and ours["precision"] == "float32"
    assert [c["code"] for c in ours["classes"]] == list(range(1, 12))
    assert [c["color"] for c in ours["classes"]] == [c.color for c in scl.LEARNED]
    assert ours["input"]["band_order"] == ["red", "green", "blue"] and ours["input"]["scale"] == 255.0
    assert ours["tile_size_px"] == META["patch_size"] and ours["overlap_px"] == 8
    # Deepness json-decodes each value and converts it with str/int/float, class names keyed "0".."N-1".
    assert json.loads(props["model_type"]) == "Segmentor"
    names = json.loads(props["class_names"])
    assert names == {str(i): c.name for i, c in enumerate(scl.LEARNED)}
    assert isinstance(json.loads(props["resolution"]), float) and json.loads(props["resolution"]) == 1000.0
    assert json.loads(props["tile_size"]) == 64 and isinstance(json.loads(props["tile_size"]), int)
    assert json.loads(props["tiles_overlap"]) == 12 and isinstance(json.loads(props["tiles_overlap"]), int)
    assert json.loads(props["standardization_mean"]) == pytest.approx(META["input"]["mean"])
    assert json.loads(props["standardization_std"]) == pytest.approx(META["input"]["std"])


def _graph(path: Path) -> Any:
    """The ONNX graph of the file at ``path``."""
    import onnx

    return onnx.load(str(path)).graph


def _int8_convolutions(path) -> int:
    """Convolutions whose weights are int8 (read through a DequantizeLinear)."""
    graph = _graph(path)
    dequantized = {out for n in graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    return sum(1 for n in graph.node if n.op_type == "Conv" and n.input[1] in dequantized)


def test_int8_agrees_with_float32_on_a_fitted_model(tmp_path):
    blocks = fitted_blocks(tmp_path)
    float_model = export_onnx(blocks["checkpoint"], tmp_path / "float.onnx")
    int8_model = export_onnx(blocks["checkpoint"], tmp_path / "int8.onnx", int8=True, patches=blocks["patches"],
                             float32_copy=tmp_path / "copy.onnx")
    assert OnnxModel(int8_model.output).info.precision == "int8"
    # The float32 file the int8 one was quantised from (the bench's one export) is the plain float32 export.
    copy, plain = OnnxModel(tmp_path / "copy.onnx"), OnnxModel(float_model.output)
    assert copy.info.precision == "float32" and copy.info.codes == plain.info.codes
    tile = np.random.default_rng(1).normal(size=(2, 3, 64, 96)).astype(np.float32)
    np.testing.assert_allclose(copy.run(tile), plain.run(tile), atol=1e-6)
    assert int8_model.size_bytes < 0.3 * float_model.size_bytes  # int8 weights: a quarter of the bytes
    assert any("classifier.4" in name for name in int8_model.kept_float)  # the logits stay float32
    # All but stem, ASPP's image pooling branch and logits: ASPP's dilated and 1x1 branches run in int8.
    assert _int8_convolutions(int8_model.output) == 61 - 3
    graph = _graph(int8_model.output)
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    shapes = [n for n in graph.node if n.op_type == "Shape"]
    assert shapes and not [n.name for n in shapes if n.input[0] in dequantized]  # shapes read the int8 tensors
    config = PredictConfig(tiling=TilingConfig(SIDE, 16))
    codes = {}
    for name in ("float", "int8"):
        predict_scene_from_checkpoint(blocks["scene"], tmp_path / f"{name}.onnx", tmp_path / f"{name}.tif", config)
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            codes[name] = src.read(1)
    assert (codes["float"] == blocks["codes"]).mean() > 0.99  # the model is worth agreeing with
    assert (codes["int8"] == codes["float"]).mean() >= 0.99


def test_int8_needs_patches_and_leaves_nothing(tmp_path, exported):
    checkpoint, _ = exported
    with pytest.raises(InputError, match="needs training patches"):
        export_onnx(checkpoint, tmp_path / "m.onnx", int8=True)
    with pytest.raises(InputError, match="should end in .onnx"):
        export_onnx(checkpoint, tmp_path / "m.pt")
    with pytest.raises(InputError, match="float32 copy comes with an int8 export only"):
        export_onnx(checkpoint, tmp_path / "m.onnx", float32_copy=tmp_path / "f.onnx")
    with pytest.raises(InputError, match="should end in .onnx, not f.pt"):
        export_onnx(checkpoint, tmp_path / "m.onnx", int8=True, patches=tmp_path / "index.json",
                    float32_copy=tmp_path / "f.pt")
    assert list(tmp_path.iterdir()) == []
