"""scldeeplab:predict through Processing and the qgis_process wrapper, with the real DeepLabv3 on small scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer
from rasterio.transform import from_origin
from scl_deeplab.model_core import scl, styles
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.prediction import predict
from scl_deeplab.tests.models import write_random_deeplab
from scl_deeplab.tests.recording import RecordingFeedback

CRS = "EPSG:32633"
TRANSFORM = from_origin(399960.0, 5000040.0, 20.0, 20.0)
SMALL = {"TILE_SIZE": 64, "OVERLAP": 8, "DEVICE": "cpu"}  # keeps the real ResNet-50 quick on a CPU


def write_scene(path: Path, width: int = 96, height: int = 80, bands: int = 3, seed: int = 0) -> str:
    data = np.random.default_rng(seed).integers(1, 255, size=(bands, height, width), dtype=np.uint8)
    data[:, :8, :8] = 0  # a no-data corner
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype="uint8", crs=CRS,
                       transform=TRANSFORM) as dst:
        dst.write(data)
    return str(path)


def run(params: dict, **kwargs) -> dict:
    import processing

    return processing.run("scldeeplab:predict", params, **kwargs)


def test_predict_writes_georeferenced_styled_scl_and_confidence(provider, deeplab_checkpoint, tmp_path):
    scene = write_scene(tmp_path / "scene.tif")
    result = run({"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "BATCH_SIZE": 3,
                  "OUTPUT": str(tmp_path / "pred.tif"), "OUTPUT_CONFIDENCE": str(tmp_path / "conf.tif")})
    assert result["OUTPUT"] == str(tmp_path / "pred.tif")
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(scene) as src:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert out.colormap(1)[9] == (255, 255, 255, 255)
        codes = out.read(1)
    assert (codes[:8, :8] == 0).all() and set(np.unique(codes[8:])) <= set(scl.learned_codes())
    with rasterio.open(result["OUTPUT_CONFIDENCE"]) as conf:
        values = conf.read(1)
    assert (values[:8, :8] == 255).all() and 9 <= values[8:].min() and values[8:].max() <= 100  # >= 1/11
    # QGIS picks up the .qml sidecars on load: SCL palette and grey ramp.
    layer = QgsRasterLayer(result["OUTPUT"], "pred")
    assert layer.isValid() and layer.renderer().type() == "paletted"
    classes = {c.value: c for c in layer.renderer().classes()}
    assert classes[6].color.name() == "#0000ff" and classes[6].label == "6 Water"
    assert QgsRasterLayer(result["OUTPUT_CONFIDENCE"], "conf").renderer().type() == "singlebandgray"


def test_output_loaded_by_processing_is_styled_as_scl(provider, deeplab_checkpoint, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingOutputLayerDefinition, QgsProject

    # As the toolbox does with "Open output file after running": the output goes to a project.
    context = QgsProcessingContext()
    project = QgsProject()
    context.setProject(project)
    out = str(tmp_path / "pred.tif")
    params = {"INPUT": write_scene(tmp_path / "scene.tif", 40, 40), "MODEL": str(deeplab_checkpoint), **SMALL,
              "OUTPUT": QgsProcessingOutputLayerDefinition(out, project)}
    run(params, context=context)
    assert context.willLoadLayerOnCompletion(out)
    details = context.layerToLoadOnCompletionDetails(out)
    assert details.name == "Predicted SCL"
    layer = QgsRasterLayer(out, "plain", "gdal", QgsRasterLayer.LayerOptions(loadDefaultStyle=False))
    details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
    assert layer.renderer().type() == "paletted" and len(layer.renderer().classes()) == len(scl.SCL_CLASSES)


def test_batch_of_scenes_loads_the_checkpoint_once(provider, deeplab_checkpoint, tmp_path, monkeypatch):
    loads = []
    real = checkpoint.load_model
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    predict.clear_model_cache()
    for i, (w, h) in enumerate([(96, 80), (72, 100)]):
        out = tmp_path / f"pred{i}.tif"
        run({"INPUT": write_scene(tmp_path / f"scene{i}.tif", w, h, seed=i), "MODEL": str(deeplab_checkpoint),
             **SMALL, "OUTPUT": str(out)})
        with rasterio.open(out) as src:
            assert src.shape == (h, w)
    assert len(loads) == 1
    predict.clear_model_cache()


def test_extent_predicts_part_of_the_scene(provider, deeplab_checkpoint, tmp_path):
    scene = write_scene(tmp_path / "scene.tif")
    left, top = TRANSFORM.c + 16 * 20, TRANSFORM.f - 8 * 20
    extent = f"{left},{left + 40 * 20},{top - 30 * 20},{top} [{CRS}]"  # xmin,xmax,ymin,ymax
    result = run({"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "EXTENT": extent,
                  "OUTPUT": str(tmp_path / "pred.tif")})
    with rasterio.open(result["OUTPUT"]) as out:
        assert out.shape == (30, 40) and (out.transform.c, out.transform.f) == (left, top)


def test_full_precision_asks_for_float32(provider, deeplab_checkpoint, tmp_path):
    from scl_deeplab.tests.recording import RecordingFeedback

    scene = write_scene(tmp_path / "scene.tif", 40, 40)
    logs = {}
    for full in (False, True):
        feedback = RecordingFeedback()
        run({"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "FULL_PRECISION": full,
             "OUTPUT": str(tmp_path / f"pred_{full}.tif")}, feedback=feedback)
        logs[full] = [line for line in feedback.infos if "precision" in line]
    assert any("precision float32: float32 was asked for" in line for line in logs[True])
    assert logs[False] and not any("was asked for" in line for line in logs[False])  # the CPU decides


def bad_cases(tmp_path: Path, good_checkpoint: Path) -> dict[str, tuple[dict, str]]:
    scene = write_scene(tmp_path / "scene.tif", 40, 40)
    (tmp_path / "broken.pt").write_bytes(b"\x00" * 100)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    good = {"INPUT": scene, "MODEL": str(good_checkpoint), **SMALL}
    return {
        "checkpoint": ({**good, "MODEL": str(tmp_path / "broken.pt")}, "not an SCL DeepLab checkpoint"),
        "bands": ({**good, "INPUT": write_scene(tmp_path / "one.tif", 40, 40, bands=1)},
                  "has 1 band.*expects 3 bands"),
        "output": ({**good, "OUTPUT": str(tmp_path / "blocker" / "pred.tif")}, "Choose another output path"),
        "tile": ({**good, "TILE_SIZE": 60}, "not a positive multiple of 8"),
        "overlap": ({**good, "OVERLAP": 32}, "less than half the tile size"),
        "device": ({**good, "DEVICE": "gpu7"}, 'Unknown device "gpu7"'),
    }


@pytest.mark.parametrize("case", ["checkpoint", "bands", "output", "tile", "overlap", "device"])
def test_bad_input_gets_a_clear_message_and_leaves_no_file(provider, deeplab_checkpoint, tmp_path, case):
    params, message = bad_cases(tmp_path, deeplab_checkpoint)[case]
    params.setdefault("OUTPUT", str(tmp_path / "pred.tif"))
    before = set(tmp_path.rglob("*"))
    with pytest.raises(QgsProcessingException, match=message):
        run(params)
    assert set(tmp_path.rglob("*")) == before


def test_cancel_leaves_no_file(provider, deeplab_checkpoint, tmp_path):
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    scene = write_scene(tmp_path / "scene.tif")
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run({"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "OUTPUT": str(tmp_path / "pred.tif"),
             "OUTPUT_CONFIDENCE": str(tmp_path / "conf.tif")}, feedback=feedback)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_predict_through_qgis_process(deeplab_checkpoint, tmp_path, qgis_process_json):
    scene = write_scene(tmp_path / "scene.tif", 80, 72)
    results = qgis_process_json("scldeeplab:predict", INPUT=scene, MODEL=deeplab_checkpoint, TILE_SIZE=64,
                                OVERLAP=8, DEVICE="cpu", OUTPUT=tmp_path / "pred.tif")
    assert results["OUTPUT"] == str(tmp_path / "pred.tif")
    with rasterio.open(tmp_path / "pred.tif") as out:
        assert out.shape == (72, 80) and out.crs == CRS
        assert set(np.unique(out.read(1)[8:])) <= set(scl.learned_codes())
    assert (tmp_path / "pred.qml").read_text() == styles.scl_qml()


def test_default_tile_size_is_the_training_patch_size_and_a_far_larger_one_warns(provider, tmp_path):
    from scl_deeplab.tests.models import META

    small = write_random_deeplab(tmp_path / "small.pt", meta={**META, "patch_size": 32})
    scene = write_scene(tmp_path / "scene.tif", 72, 40)
    feedback = RecordingFeedback()
    run({"INPUT": scene, "MODEL": str(small), "DEVICE": "cpu", "OUTPUT": str(tmp_path / "auto.tif")}, feedback=feedback)
    assert "Tiles of 32 px, the patch size this model was trained on." in feedback.infos
    assert any("in 6 tiles of 32 x 32 px (overlap 4 px" in line for line in feedback.infos)  # 3 x 2, 4 px overlap
    assert feedback.warnings == []
    feedback = RecordingFeedback()
    run({"INPUT": scene, "MODEL": str(small), "DEVICE": "cpu", "TILE_SIZE": 512, "OUTPUT": str(tmp_path / "big.tif")},
        feedback=feedback)
    assert any("TILE_SIZE 512 px is 16x the 32 px patches" in w and "TILE_SIZE 0" in w for w in feedback.warnings)


def test_checkpoint_without_patch_size_keeps_the_512_px_default_with_a_note(provider, tmp_path):
    from scl_deeplab.tests.models import META

    old = write_random_deeplab(tmp_path / "old.pt", meta={k: v for k, v in META.items() if k != "patch_size"})
    feedback = RecordingFeedback()
    run({"INPUT": write_scene(tmp_path / "scene.tif", 72, 40), "MODEL": str(old), "DEVICE": "cpu",
         "OUTPUT": str(tmp_path / "pred.tif")}, feedback=feedback)
    assert any(line.startswith("Tiles of 512 px, the default: this model does not record the patch size")
               for line in feedback.infos)
    assert any("in 1 tiles of 72 x 40 px (overlap 64 px" in line for line in feedback.infos)
    assert feedback.warnings == []
