"""Fixtures shared by all tests: the registered provider, the qgis_process wrapper and one model checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WRAPPER = REPO / "scripts" / "qgis-process"

# Torch uses both cores; more threads than cores only slows the suite down.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SUITE_MARK = ".scl_deeplab_suite"  # marks a pytest base folder this suite made


def _running(lock: Path) -> bool:
    """Whether the pytest run that holds ``lock`` (its pid inside) is still alive; a finished run removed it."""
    try:
        os.kill(int(lock.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def temporary_files_under_the_run(request, tmp_path_factory):
    """Keep every temporary file of the suite, its child processes' included, under this run's pytest folder.

    pytest deletes that folder after a passing run (``tmp_path_retention_policy``), but a run that is
    killed or times out leaves it behind with its lock for three days: checkpoints of several GB. So the
    folders earlier runs of this suite left are removed first, unless their run is still going. TMPDIR
    points inside this run's folder, so torchrun, workers and qgis_process leave nothing in /tmp either.
    """
    base = tmp_path_factory.getbasetemp()
    if request.config.option.basetemp is None:  # pytest's own numbered folders, not one the user chose
        for earlier in base.parent.glob("pytest-*"):
            if earlier != base and (earlier / SUITE_MARK).exists() and not _running(earlier / ".lock"):
                shutil.rmtree(earlier, ignore_errors=True)
    (base / SUITE_MARK).touch()
    scratch = base / "tmp"
    scratch.mkdir()
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = None  # gettempdir() caches its answer: ask again
    yield scratch
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None


@pytest.fixture(scope="session")
def provider(qgis_app, qgis_processing):
    """The SCL DeepLab provider, registered once for every algorithm test."""
    from qgis.core import QgsApplication
    from scl_deeplab.provider.provider import SclDeepLabProvider

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("scldeeplab")
    if existing is not None:
        yield existing
        return
    instance = SclDeepLabProvider()
    assert registry.addProvider(instance)
    yield instance
    registry.removeProvider("scldeeplab")  # by id: tests/test_plugin.py may have replaced the instance


@pytest.fixture(scope="session")
def deeplab_checkpoint(tmp_path_factory) -> Path:
    """The real DeepLabv3-ResNet50 with random weights and ImageNet input (``tests/models.py``), written once.

    Every test that needs a checkpoint file reads this one: a checkpoint is ~160 MB, so one per
    test would fill the temporary folder. Tests must not change it.
    """
    from scl_deeplab.tests.models import write_random_deeplab

    return write_random_deeplab(tmp_path_factory.mktemp("checkpoint") / "deeplab_random.pt")


def run_qgis_process(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the scripts/qgis-process wrapper as a user would, in a subprocess."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(WRAPPER), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def run_algorithm_json(algorithm: str, **params: object) -> dict:
    """Run one algorithm through the wrapper with --json and return its outputs."""
    args = ["run", algorithm, "--json", "--"] + [f"{k}={v}" for k, v in params.items()]
    proc = run_qgis_process(*args)
    assert proc.returncode == 0, f"qgis_process failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    start = proc.stdout.index("{")
    return json.loads(proc.stdout[start:])["results"]


@pytest.fixture(scope="session")
def qgis_process_json():
    """A function running an algorithm through the qgis_process wrapper, returning its outputs."""
    return run_algorithm_json
