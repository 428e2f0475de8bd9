"""Export model to ONNX as a Processing algorithm, and Predict with the .onnx where QGIS's Python lacks torch."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import rasterio
from qgis.core import QgsProcessingException
from scl_deeplab.model_core.prediction.predict import PredictConfig, predict_scene_from_checkpoint
from scl_deeplab.model_core.prediction.tiling import TilingConfig
from scl_deeplab.tests.onnx_models import fitted_blocks
from scl_deeplab.tests.test_without_torch import HIDE_TORCH, WRAPPER


@pytest.fixture(scope="module")
def exported(provider, tmp_path_factory):
    import processing

    folder = tmp_path_factory.mktemp("exportonnx")
    blocks = fitted_blocks(folder)
    result = processing.run("scldeeplab:exportonnx", {"MODEL": str(blocks["checkpoint"]),
                                                      "OUTPUT": str(folder / "fitted.onnx")})
    return blocks | {"onnx": Path(result["OUTPUT"]), "folder": folder}


def test_exportonnx_writes_a_model_with_metadata(exported):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(exported["onnx"]), load_external_data=False).metadata_props}
    assert json.loads(props["scl_deeplab"])["precision"] == "float32"
    assert json.loads(props["model_type"]) == "Segmentor"


def test_exportonnx_int8_without_patches_is_refused(provider, exported, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="int8 needs training patches"):
        processing.run("scldeeplab:exportonnx", {"MODEL": str(exported["checkpoint"]), "INT8": True,
                                                 "OUTPUT": str(tmp_path / "m.onnx")})
    assert not (tmp_path / "m.onnx").exists()


def _hidden(folder: Path, *modules: str) -> dict[str, str]:
    """An environment whose Python cannot import ``modules`` (torch and torchvision always)."""
    names = "{" + ", ".join(repr(m) for m in ("torch", "torchvision", *modules)) + "}"
    (folder / "sitecustomize.py").write_text(HIDE_TORCH.replace('{"torch", "torchvision"}', names), encoding="utf-8")
    return dict(os.environ, PYTHONPATH=str(folder), SCL_DEEPLAB_TEST_MARKER=str(folder / "marker.txt"),
                SCL_DEEPLAB_RUNTIME="auto", SCL_DEEPLAB_WORKER_PYTHON="")


def _predict(env: dict[str, str], exported, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(WRAPPER), "run", "scldeeplab:predict", "--", f"INPUT={exported['scene']}",
         f"MODEL={exported['onnx']}", "TILE_SIZE=128", "OVERLAP=16", f"OUTPUT={out}"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert (Path(env["SCL_DEEPLAB_TEST_MARKER"])).read_text() == "hidden"  # torch really was hidden
    return proc


def test_predict_onnx_through_qgis_process_without_torch(exported, tmp_path):
    out = tmp_path / "predicted.tif"
    proc = _predict(_hidden(tmp_path), exported, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    expected = tmp_path / "expected.tif"
    predict_scene_from_checkpoint(exported["scene"], exported["onnx"], expected,
                                  PredictConfig(tiling=TilingConfig(128, 16)))
    with rasterio.open(out) as got, rasterio.open(expected) as want:
        codes = got.read(1)
        assert (codes == want.read(1)).all()
    assert (codes == exported["codes"]).mean() > 0.95


def test_predict_onnx_without_onnxruntime_says_what_to_install(exported, tmp_path):
    out = tmp_path / "predicted.tif"
    proc = _predict(_hidden(tmp_path, "onnxruntime"), exported, out)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "pip install onnxruntime" in output and "Traceback" not in output
    assert not out.exists()
