"""Without PyTorch in QGIS's Python the plugin still loads and its algorithms say how to install it.

qgis_process runs in a subprocess whose Python cannot find torch or torchvision: a sitecustomize on
PYTHONPATH swaps the path finder for one that answers "not found" for them, as if never installed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parent.parent
WRAPPER = REPO / "scripts" / "qgis-process"
ALGORITHMS = ("samplescene", "makepatches", "trainhead", "finetunelayer4", "predict", "evaluate")

HIDE_TORCH = '''
import os
import sys
from importlib.machinery import PathFinder


class WithoutTorch(PathFinder):
    """The standard path finder, except that torch and torchvision are not installed."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.split(".")[0] in {"torch", "torchvision"}:
            return None
        return super().find_spec(fullname, path, target)


sys.meta_path[:] = [WithoutTorch if finder is PathFinder else finder for finder in sys.meta_path]
try:
    import torch  # noqa: F401
    state = "visible"
except ModuleNotFoundError:
    state = "hidden"
with open(os.environ["SCL_DEEPLAB_TEST_MARKER"], "w") as marker:
    marker.write(state)
'''


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory):
    """Run the qgis_process wrapper in a Python where torch cannot be imported; returns a runner."""
    folder = tmp_path_factory.mktemp("without_torch")
    (folder / "sitecustomize.py").write_text(HIDE_TORCH, encoding="utf-8")
    marker = folder / "marker.txt"

    def run(*args: str) -> subprocess.CompletedProcess:
        marker.unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(folder), SCL_DEEPLAB_TEST_MARKER=str(marker))
        proc = subprocess.run([str(WRAPPER), *args], capture_output=True, text=True, env=env, timeout=300,
                              cwd=folder, check=False)
        # The hiding really happened in QGIS's Python, or the test would prove nothing.
        assert marker.read_text() == "hidden"
        return proc

    return run


def test_algorithms_are_listed_without_torch(without_torch):
    proc = without_torch("list")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = set(re.findall(r"scldeeplab:(\w+)", proc.stdout))
    assert set(ALGORITHMS) <= listed
    assert "Traceback" not in proc.stdout + proc.stderr


def _inputs(tmp_path: Path) -> dict[str, Path]:
    """Small real inputs; they are never read, because the missing torch stops the run first."""
    manifest = tmp_path / "index.json"
    manifest.write_text('{"format": "scl-deeplab-patches", "version": 1, "patches": []}', encoding="utf-8")
    checkpoint = tmp_path / "trained.pt"
    checkpoint.write_bytes(b"not opened")
    scene = tmp_path / "scene.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": from_origin(500000.0, 5000000.0, 10.0, 10.0)}
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.full((3, 8, 8), 120, np.uint8))
    return {"patches": manifest, "checkpoint": checkpoint, "scene": scene}


RUNS = {
    "trainhead": ("PATCHES={patches}", "OUTPUT_MODEL={out}/model.pt", "OUTPUT_CURVES={out}/curves.png"),
    "finetunelayer4": ("MODEL={checkpoint}", "PATCHES={patches}", "OUTPUT_MODEL={out}/model.pt",
                       "OUTPUT_CURVES={out}/curves.png"),
    "predict": ("INPUT={scene}", "MODEL={checkpoint}", "OUTPUT={out}/predicted.tif"),
}


@pytest.mark.parametrize("algorithm", sorted(RUNS))
def test_torch_algorithms_say_what_to_install(without_torch, tmp_path, algorithm):
    out = tmp_path / "out"
    out.mkdir()
    values = {key: str(path) for key, path in _inputs(tmp_path).items()} | {"out": str(out)}
    proc = without_torch("run", f"scldeeplab:{algorithm}", "--", *(arg.format(**values) for arg in RUNS[algorithm]))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "PyTorch and torchvision are not installed in the Python that QGIS uses." in output
    assert "Traceback" not in output and "ModuleNotFoundError" not in output
    assert list(out.iterdir()) == []  # nothing half-written

    command = re.search(r"run: (\S+) -m pip install (.*?)torch torchvision; then restart QGIS", output)
    assert command is not None, output
    python, flags = command.group(1), command.group(2)
    # The named interpreter is the one QGIS embeds: it imports qgis.core and is no venv.
    check = subprocess.run(
        [python, "-c", "import sys, sysconfig, qgis.core; print(sys.prefix == sys.base_prefix, sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert check.returncode == 0, check.stderr
    is_system, stdlib = check.stdout.split()
    assert is_system == "True"
    # PEP 668 (Debian, Ubuntu): pip refuses the system Python unless installing for the user.
    externally_managed = (Path(stdlib) / "EXTERNALLY-MANAGED").exists()
    assert (flags == "--user --break-system-packages ") == externally_managed


def test_runtime_and_the_typed_configs_import_without_torch_or_qgis(tmp_path):
    """The pure parts of runtime/ and the configs the algorithms build need neither torch nor qgis."""
    (tmp_path / "sitecustomize.py").write_text(HIDE_TORCH, encoding="utf-8")
    script = (
        "import sys\n"
        "import scl_deeplab.runtime.child, scl_deeplab.runtime.settings, scl_deeplab.runtime.interpreter\n"
        "import scl_deeplab.runtime.plan, scl_deeplab.runtime.setup, scl_deeplab.runtime.dispatch\n"
        "from scl_deeplab.model_core.prediction.config import PredictConfig\n"
        "from scl_deeplab.model_core.training.config import TrainConfig\n"
        "from scl_deeplab.runtime.interpreter import torch_importable\n"
        "print(torch_importable(), sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'qgis'}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path),
               SCL_DEEPLAB_TEST_MARKER=str(tmp_path / "marker.txt"))
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert (tmp_path / "marker.txt").read_text() == "hidden"
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "False []"
