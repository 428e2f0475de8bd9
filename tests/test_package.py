"""`make package` builds a zip that QGIS installs and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_package_zip_installs_and_runs(tmp_path):
    subprocess.run(["make", "-s", "package"], cwd=REPO, check=True, capture_output=True)
    version = next(
        line.split("=", 1)[1] for line in (REPO / "metadata.txt").read_text().splitlines() if line.startswith("version=")
    )
    archive = REPO / "dist" / f"scl_deeplab-{version}.zip"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert {n.split("/")[0] for n in names} == {"scl_deeplab"}
        assert "scl_deeplab/metadata.txt" in names and "scl_deeplab/resources/scl.qml" in names
        assert not [n for n in names if n.startswith(("scl_deeplab/tests/", "scl_deeplab/.venv", "scl_deeplab/.ci"))]
        assert not [n for n in names if "__pycache__" in n]
        plugins = tmp_path / "plugins"
        zf.extractall(plugins)

    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PLUGINPATH=str(plugins),
        QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "config"),
        PYTHONPATH=sysconfig.get_path("purelib"),  # the venv's torch, whatever the Python version
    )
    binary = "/usr/bin/qgis_process.bin"
    subprocess.run([binary, "plugins", "enable", "scl_deeplab"], env=env, capture_output=True, check=False)
    proc = subprocess.run(
        [binary, "run", "scldeeplab:samplescene", "--json", "--", "SIZE=96", "SEED=3",
         f"OUTPUT_IMAGE={tmp_path / 'scene.tif'}", f"OUTPUT_SCL={tmp_path / 'scl.tif'}"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout[proc.stdout.index("{"):])["results"]
    assert Path(results["OUTPUT_SCL"]).stat().st_size > 0
