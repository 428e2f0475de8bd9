"""The runtime choice: Check runtime, and the model work run in a worker Python instead of QGIS's own.

The worker is the project's own venv Python, started as a child process; fake workers (small shell
scripts) stand in for one that crashes or hangs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from qgis.core import QgsProcessingException, QgsProcessingFeedback
from rasterio.transform import from_origin
from scl_deeplab.model_core.net import checkpoint
from scl_deeplab.model_core.net.device import cpu_has_native_bf16
from scl_deeplab.tests.models import write_random_deeplab
from scl_deeplab.tests.recording import RecordingFeedback
from scl_deeplab.tests.sample_patches import sample_patches

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
WRAPPER = REPO / "scripts" / "qgis-process"
SMALL = {"TILE_SIZE": 64, "OVERLAP": 8, "DEVICE": "cpu", "BATCH_SIZE": 2}


@pytest.fixture(scope="module")
def deeplab_checkpoint(tmp_path_factory) -> Path:
    """The real DeepLabv3-ResNet50 with random weights."""
    return write_random_deeplab(tmp_path_factory.mktemp("runtime") / "deeplab_random.pt")


def write_scene(path: Path, width: int = 96, height: int = 80, seed: int = 0) -> str:
    data = np.random.default_rng(seed).integers(1, 255, size=(3, height, width), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(399960.0, 5000040.0, 20.0, 20.0)) as dst:
        dst.write(data)
    return str(path)


@pytest.fixture
def worker(monkeypatch):
    """Worker mode with the project's venv Python, through the environment variables."""
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(VENV_PYTHON))


def fake_worker(tmp_path: Path, body: str) -> Path:
    """An executable standing in for WORKER_PYTHON."""
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/bash\n" + body, encoding="utf-8")
    script.chmod(0o755)
    return script


def dummy_model(tmp_path: Path) -> Path:
    """A .pt file the fake workers never open."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"never opened")
    return path


def run(algorithm: str, params: dict, feedback: QgsProcessingFeedback | None = None) -> dict:
    import processing

    return processing.run(f"scldeeplab:{algorithm}", params, feedback=feedback)


def test_environment_reports_versions_device_and_precision(provider):
    feedback = RecordingFeedback()
    result = run("environment", {}, feedback)
    assert result["RUNTIME"] == "in-process" and result["READY"] is True and result["ERROR"] == ""
    assert result["TORCH_VERSION"] == torch.__version__ and result["RASTERIO_VERSION"] == rasterio.__version__
    assert result["PYTHON"] == sys.version.split()[0]
    assert result["CUDA_AVAILABLE"] is torch.cuda.is_available() and result["DEVICE"] == "cpu"
    assert result["CPU_NATIVE_BF16"] is cpu_has_native_bf16()
    assert result["PRECISION"] == ("bfloat16" if cpu_has_native_bf16() else "float32")
    assert "bfloat16" in result["DEVICE_REASON"]
    assert any(line.startswith("Algorithms with DEVICE auto will use: Device cpu") for line in feedback.infos)


def test_environment_in_worker_mode_through_qgis_process(qgis_process_json, monkeypatch, worker):
    result = qgis_process_json("scldeeplab:environment")
    assert result["RUNTIME"] == "worker" and result["RUNTIME_REASON"] == "RUNTIME is worker"
    assert result["WORKER_PYTHON"] == str(VENV_PYTHON) == result["PYTHON_EXECUTABLE"]
    assert result["TORCHVISION_VERSION"] == importlib.import_module("torchvision").__version__
    assert result["READY"] is True and result["DEVICE"] == "cpu"


def test_environment_command_line_prints_json():
    proc = subprocess.run([str(VENV_PYTHON), "-m", "scl_deeplab.model_core", "environment"], capture_output=True,
                          text=True, check=True, timeout=120)
    report = json.loads(proc.stdout)
    assert report["torch_version"] == torch.__version__ and report["missing"] == ""
    assert report["cpu_native_bf16"] is cpu_has_native_bf16()
    assert "Packages: torch" in proc.stderr


def test_worker_predict_is_identical_to_in_process(provider, deeplab_checkpoint, tmp_path, monkeypatch):
    scene = write_scene(tmp_path / "scene.tif")
    outputs = {}
    for mode in ("in-process", "worker"):
        monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", mode)
        monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(VENV_PYTHON))
        feedback = RecordingFeedback()
        out, conf = tmp_path / f"{mode}.tif", tmp_path / f"{mode}_conf.tif"
        result = run("predict", {"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "OUTPUT": str(out),
                                 "OUTPUT_CONFIDENCE": str(conf)}, feedback)
        assert result["OUTPUT"] == str(out)
        assert feedback.percents == sorted(feedback.percents) and feedback.percents[-1] == 100
        assert any(line.startswith("Predicted 4 tiles") for line in feedback.infos)
        with rasterio.open(out) as src, rasterio.open(conf) as c:
            outputs[mode] = (src.read(1), c.read(1), src.transform, src.colormap(1))
    (codes_a, conf_a, tr_a, cmap_a), (codes_b, conf_b, tr_b, cmap_b) = outputs.values()
    assert codes_a.shape == (80, 96) and (codes_a > 0).all()
    assert np.array_equal(codes_a, codes_b) and np.array_equal(conf_a, conf_b)
    assert (tr_a, cmap_a) == (tr_b, cmap_b)
    assert (tmp_path / "in-process.tif").read_bytes() == (tmp_path / "worker.tif").read_bytes()


def test_error_in_the_worker_reaches_the_user_without_traceback(provider, tmp_path, worker):
    bad = tmp_path / "not_a_model.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(QgsProcessingException) as err:
        run("predict", {"INPUT": write_scene(tmp_path / "scene.tif", 32, 32), "MODEL": str(bad), **SMALL,
                        "OUTPUT": str(tmp_path / "pred.tif")})
    message = str(err.value)
    assert "not_a_model.pt" in message and "Traceback" not in message
    assert not (tmp_path / "pred.tif").exists()


def test_crashing_worker_gives_a_clear_message(provider, tmp_path, monkeypatch):
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    crash = fake_worker(tmp_path, 'echo "Fatal Python error: Segmentation fault" >&2\nexit 139\n')
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(crash))
    with pytest.raises(QgsProcessingException, match=r"stopped \(exit code 139\) without a result") as err:
        run("predict", {"INPUT": write_scene(tmp_path / "scene.tif", 32, 32), "MODEL": str(dummy_model(tmp_path)), **SMALL,
                        "OUTPUT": str(tmp_path / "pred.tif")})
    assert "Segmentation fault" in str(err.value) and str(crash) in str(err.value)


def test_missing_worker_python_says_which_setting(provider, tmp_path, monkeypatch):
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(QgsProcessingException, match="Cannot start the worker Python .*SCL_DEEPLAB_WORKER_PYTHON"):
        run("predict", {"INPUT": write_scene(tmp_path / "scene.tif", 32, 32), "MODEL": str(dummy_model(tmp_path)),
                        **SMALL, "OUTPUT": str(tmp_path / "pred.tif")})


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_cancel_ends_the_worker_and_its_children(provider, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    hang = fake_worker(tmp_path, f'sleep 300 &\necho "$$ $!" > {pids}\n'
                                 'echo \'{"type": "progress", "percent": 5}\'\nwait\n')
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(hang))
    feedback = RecordingFeedback()
    feedback.progressChanged.connect(lambda percent: feedback.cancel())
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run("predict", {"INPUT": write_scene(tmp_path / "scene.tif", 32, 32), "MODEL": str(dummy_model(tmp_path)), **SMALL,
                        "OUTPUT": str(tmp_path / "pred.tif")}, feedback)
    assert feedback.percents == [5]
    shell, sleeper = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 10
    while not (_gone(shell) and _gone(sleeper)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(shell) and _gone(sleeper)


def test_cancel_mid_prediction_leaves_no_output(provider, deeplab_checkpoint, tmp_path, worker):
    scene = write_scene(tmp_path / "scene.tif", 320, 320)
    out = tmp_path / "out"
    out.mkdir()
    feedback = RecordingFeedback()
    feedback.progressChanged.connect(lambda percent: percent > 0 and feedback.cancel())
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run("predict", {"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL, "OUTPUT": str(out / "pred.tif"),
                        "OUTPUT_CONFIDENCE": str(out / "conf.tif")}, feedback)
    assert 0 < feedback.percents[-1] < 100
    assert list(out.iterdir()) == []


def test_without_torch_in_qgis_the_worker_runs(tmp_path):
    spec = importlib.util.spec_from_file_location("without_torch_helpers", REPO / "tests" / "test_without_torch.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    (tmp_path / "sitecustomize.py").write_text(helpers.HIDE_TORCH, encoding="utf-8")
    marker = tmp_path / "marker.txt"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), SCL_DEEPLAB_TEST_MARKER=str(marker),
               SCL_DEEPLAB_RUNTIME="auto", SCL_DEEPLAB_WORKER_PYTHON=str(VENV_PYTHON))
    proc = subprocess.run([str(WRAPPER), "run", "scldeeplab:environment", "--json"], capture_output=True,
                          text=True, env=env, timeout=300, cwd=tmp_path, check=False)
    assert marker.read_text() == "hidden"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout[proc.stdout.index("{"):])["results"]
    assert result["RUNTIME"] == "worker" and "PyTorch is missing in QGIS's Python" in result["RUNTIME_REASON"]
    assert result["TORCH_VERSION"] == torch.__version__ and result["READY"] is True


@pytest.fixture(scope="module")
def small_patches(provider, tmp_path_factory) -> Path:
    """samplescene then makepatches: a handful of 32 px patches."""
    made = sample_patches(tmp_path_factory.mktemp("runtime_patches"), 96, 7)
    return Path(made["OUTPUT_INDEX"])


def train_params(patches: Path, folder: Path) -> dict:
    return {"PATCHES": str(patches), "EPOCHS": 1, "BATCH_SIZE": 4, "LEARNING_RATE": 0.001, "PRETRAINED": "none",
            "DEVICE": "cpu", "SEED": 3, "OUTPUT_MODEL": str(folder / "head.pt"),
            "OUTPUT_CURVES": str(folder / "head.png")}


def test_worker_training_matches_in_process(provider, small_patches, tmp_path, monkeypatch):
    results, weights = {}, {}
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(VENV_PYTHON))
    for mode in ("in-process", "worker"):
        monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", mode)
        folder = tmp_path / mode
        folder.mkdir()
        feedback = RecordingFeedback()
        results[mode] = run("trainhead", train_params(small_patches, folder), feedback)
        assert feedback.percents == sorted(feedback.percents) and feedback.percents[-1] == 100
        assert any(line.startswith("Epoch 1") for line in feedback.infos)
        weights[mode] = checkpoint.load_checkpoint(results[mode]["OUTPUT_MODEL"])
    a, b = results.values()
    assert a["OUTPUT_MODEL"] == str(tmp_path / "in-process" / "head.pt")
    assert b["OUTPUT_MODEL"] == str(tmp_path / "worker" / "head.pt") and Path(b["LAST_MODEL"]).exists()
    assert (a["PIXEL_ACCURACY"], a["MIOU"], a["BEST_EPOCH"]) == (b["PIXEL_ACCURACY"], b["MIOU"], b["BEST_EPOCH"])
    state_a, state_b = (w["state_dict"] for w in weights.values())
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_cancel_mid_training_leaves_no_checkpoint(provider, small_patches, tmp_path, worker):
    feedback = RecordingFeedback()
    feedback.progressChanged.connect(lambda percent: percent > 0 and feedback.cancel())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run("trainhead", {**train_params(small_patches, out), "EPOCHS": 3}, feedback)
    assert 0 < feedback.percents[-1] < 100
    assert list(out.iterdir()) == []


def test_settings_are_in_processing_options_and_env_overrides_them(provider, monkeypatch):
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsSettings
    from scl_deeplab.runtime import dispatch as runtime
    from scl_deeplab.runtime.errors import RuntimeSettingError
    from scl_deeplab.runtime.settings import worker_python

    setting = ProcessingConfig.settings["SCL_DEEPLAB_RUNTIME"]
    assert setting.group == "SCL DeepLab" and setting.options == ["auto", "in-process", "worker"]
    assert ProcessingConfig.settings["SCL_DEEPLAB_WORKER_PYTHON"].qname == "scl_deeplab/worker_python"
    monkeypatch.delenv("SCL_DEEPLAB_RUNTIME", raising=False)
    monkeypatch.delenv("SCL_DEEPLAB_WORKER_PYTHON", raising=False)
    settings = QgsSettings()
    try:
        settings.setValue("scl_deeplab/runtime", 2)  # what the options dialog stores: the index of "worker"
        settings.setValue("scl_deeplab/worker_python", "/opt/torch/bin/python")
        assert runtime.chosen_runtime() == ("worker", "RUNTIME is worker")
        assert worker_python() == "/opt/torch/bin/python"
        monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "in-process")
        assert runtime.chosen_runtime() == ("in-process", "RUNTIME is in-process")
        monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "gpu")
        with pytest.raises(RuntimeSettingError, match='Unknown SCL DeepLab runtime "gpu"'):
            runtime.chosen_runtime()
        with pytest.raises(QgsProcessingException, match='Unknown SCL DeepLab runtime "gpu"'):
            run("environment", {})
    finally:
        settings.remove("scl_deeplab/runtime")
        settings.remove("scl_deeplab/worker_python")
    monkeypatch.delenv("SCL_DEEPLAB_RUNTIME")
    assert runtime.chosen_runtime()[0] == "in-process" and worker_python() == ""


def test_environment_reports_a_broken_worker_without_failing(provider, tmp_path, monkeypatch):
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(tmp_path / "no-such-python"))
    result = run("environment", {})
    assert result["RUNTIME"] == "worker" and result["READY"] is False
    assert result["ERROR"].startswith(f"Cannot start the worker Python {tmp_path / 'no-such-python'}")
    assert result["TORCH_VERSION"] == "" and result["DEVICE"] == ""


def test_without_torch_in_qgis_the_worker_predicts_as_in_process(provider, deeplab_checkpoint, tmp_path, monkeypatch):
    scene = write_scene(tmp_path / "scene.tif")
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "in-process")
    expected = run("predict", {"INPUT": scene, "MODEL": str(deeplab_checkpoint), **SMALL,
                               "OUTPUT": str(tmp_path / "in-process.tif")})["OUTPUT"]

    spec = importlib.util.spec_from_file_location("without_torch_helpers", REPO / "tests" / "test_without_torch.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(helpers.HIDE_TORCH, encoding="utf-8")
    marker = tmp_path / "marker.txt"
    env = dict(os.environ, PYTHONPATH=str(hide), SCL_DEEPLAB_TEST_MARKER=str(marker),
               SCL_DEEPLAB_RUNTIME="auto", SCL_DEEPLAB_WORKER_PYTHON=str(VENV_PYTHON))
    out = tmp_path / "worker.tif"
    params = {"INPUT": scene, "MODEL": deeplab_checkpoint, **SMALL, "OUTPUT": out}
    proc = subprocess.run([str(WRAPPER), "run", "scldeeplab:predict", "--json", "--",
                           *(f"{k}={v}" for k, v in params.items())],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path, check=False)
    assert marker.read_text() == "hidden"
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout[proc.stdout.index("{"):])["results"]["OUTPUT"] == str(out)
    with rasterio.open(expected) as a, rasterio.open(out) as b:
        codes_a, codes_b = a.read(1), b.read(1)
        assert (a.transform, a.crs) == (b.transform, b.crs)
    assert codes_a.shape == (80, 96) and (codes_a > 0).all()
    assert np.array_equal(codes_a, codes_b)


def test_the_worker_gets_the_typed_config_and_answers_a_typed_result(qgis_app, tmp_path, monkeypatch):
    from scl_deeplab.model_core.prediction.config import PredictConfig, PredictResult
    from scl_deeplab.model_core.prediction.tiling import TilingConfig
    from scl_deeplab.runtime import dispatch

    job = tmp_path / "job.json"
    answer = {"output": str(tmp_path / "out.tif"), "confidence": None, "width": 96, "height": 80, "tiles": 4,
              "seconds": 0.5, "device": "cpu"}
    echo = fake_worker(tmp_path, f"cat > {job}\necho '{{\"type\": \"info\", \"message\": \"hello\"}}'\n"
                                 f"echo '{json.dumps({'type': 'result', 'result': answer})}'\n")
    monkeypatch.setenv("SCL_DEEPLAB_RUNTIME", "worker")
    monkeypatch.setenv("SCL_DEEPLAB_WORKER_PYTHON", str(echo))
    config = PredictConfig(tiling=TilingConfig(128, 16), bands=(3, 2, 1), extent=(1.0, 2.0, 3.0, 4.0), fast=True)
    feedback = RecordingFeedback()
    result = dispatch.predict(Path("scene.tif"), Path("model.pt"), tmp_path / "out.tif", config, confidence=None,
                              feedback=feedback)
    assert result == PredictResult(tmp_path / "out.tif", None, 96, 80, 4, 0.5, "cpu")
    assert feedback.infos == ["hello"]
    sent = json.loads(job.read_text())
    assert (sent["format"], sent["task"]) == ("scl-deeplab-job", "predict")
    assert PredictConfig.from_dict(sent["args"]["config"]) == config
    assert sent["args"]["scene"] == "scene.tif" and sent["args"]["confidence"] is None


def test_a_worker_error_keeps_its_model_core_class(qgis_app, tmp_path, monkeypatch):
    from scl_deeplab.model_core.errors import CheckpointError
    from scl_deeplab.runtime import dispatch
    from scl_deeplab.runtime.errors import WorkerError

    record = {"type": "error", "kind": "CheckpointError", "message": "model.pt is not a checkpoint", "known": True}
    failing = fake_worker(tmp_path, f"cat > /dev/null\necho '{json.dumps(record)}'\nexit 1\n")
    with pytest.raises(CheckpointError, match="model.pt is not a checkpoint"):
        dispatch.run_in_worker("predict", {}, RecordingFeedback(), python=str(failing))
    record.update(kind="ZeroDivisionError", message="ZeroDivisionError: division by zero", known=False)
    failing = fake_worker(tmp_path, f"cat > /dev/null\necho '{json.dumps(record)}'\nexit 1\n")
    with pytest.raises(WorkerError, match="ZeroDivisionError: division by zero"):
        dispatch.run_in_worker("predict", {}, RecordingFeedback(), python=str(failing))
