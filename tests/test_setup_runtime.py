"""runtime/setup.py: a worker Python in a venv, its dry run, the wheels it picks, and the plugin storing WORKER_PYTHON.

Nothing downloads: the real run builds the venv on the project's venv Python with --system-site-packages,
so the pinned packages are already there, and pip runs with no configuration (no local mirrors) and no
retries, so any attempt to reach an index would fail the test. A fake nvidia-smi stands in for a driver.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from scl_deeplab.runtime import plan as rp
from scl_deeplab.runtime import setup as sr

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
SYSTEM_PYTHON = Path(sys.base_exec_prefix) / "bin" / "python3"  # Debian's, without torch
PIP = "-m pip install --disable-pip-version-check --no-input --progress-bar off"
PYTHON_X_Y = f"python{sys.version_info.major}.{sys.version_info.minor}"
# The installer pins numpy<2 only where the base Python has numpy 1.x (Debian 12); Debian 13's numpy 2 stays.
BASE_HAS_NUMPY_1 = subprocess.run(
    [str(VENV_PYTHON), "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True, check=True
).stdout.startswith("1.")
SETUP = ("-m", "scl_deeplab.runtime.setup")
OLD_SETUP = ("-m", "scl_deeplab.model_core", "setup-runtime")  # the spelling before runtime/ existed


@pytest.fixture
def offline_pip(monkeypatch):
    """pip without the machine's configuration (mirrors, wheel folders) and failing at once on the network."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "2")


def cli(*args: str, path: str | None = None, spelling: tuple[str, ...] = SETUP) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path or os.environ["PATH"])
    return subprocess.run([str(VENV_PYTHON), *spelling, *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def fake_nvidia_smi(folder: Path, cuda: str) -> str:
    """A folder with an nvidia-smi that prints a driver's header; returns a PATH with it first."""
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '| NVIDIA-SMI 570.86.10    Driver Version: 570.86.10    "
                   f"CUDA Version: {cuda}     |'\n", encoding="utf-8")
    smi.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_pins_are_those_of_requirements_and_constraints():
    requirements = (REPO / "requirements.txt").read_text().splitlines()
    # constraints.txt caps numpy per Python with an environment marker: compare the pins without it
    constraints = [line.split(";")[0].strip() for line in (REPO / "constraints.txt").read_text().splitlines()]
    assert set(rp.TORCH_REQUIREMENTS) <= set(requirements)
    assert set(rp.KEEP) <= set(constraints)


def test_dry_run_lists_the_cpu_commands_and_does_nothing(tmp_path):
    target = tmp_path / "runtime"
    proc = cli("--target", str(target), "--cuda", "cpu", "--python", str(VENV_PYTHON), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    worker = target / "bin" / "python"
    pin = " 'numpy<2'" if BASE_HAS_NUMPY_1 else ""
    assert result["commands"] == [
        f"{VENV_PYTHON} -m venv {target}",
        f"{worker} {PIP} --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1" + pin,
        f"{worker} {PIP} 'rasterio>=1.3,<1.5' 'matplotlib>=3.6,<4'{pin} 'affine<3'",
    ]
    assert (result["variant"], result["reason"], result["dry_run"]) == ("cpu", "--cuda cpu", True)
    assert result["worker_python"] == str(worker)
    assert f"Would create the venv: {VENV_PYTHON} -m venv {target}" in proc.stderr
    assert not target.exists()


def test_dry_run_for_a_cuda_tag_uses_its_index(tmp_path):
    target = tmp_path / "runtime"
    proc = cli("--target", str(target), "--cuda", "cu121", "--python", str(VENV_PYTHON), "--dry-run",
               "--system-site-packages")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["index_url"] == "https://download.pytorch.org/whl/cu121"
    assert result["commands"][0] == f"{VENV_PYTHON} -m venv --system-site-packages --without-pip {target}"
    assert result["commands"][1].endswith(
        "--index-url https://download.pytorch.org/whl/cu121 torch==2.14.1 torchvision==0.29.1"
        + (" 'numpy<2'" if BASE_HAS_NUMPY_1 else ""))
    assert result["linked_site_packages"] == [str(REPO / ".venv" / "lib" / PYTHON_X_Y / "site-packages")]
    assert not target.exists()


def test_the_old_model_core_spelling_runs_the_same_set_up(tmp_path):
    target = tmp_path / "runtime"
    args = ("--target", str(target), "--cuda", "cpu", "--python", str(VENV_PYTHON), "--dry-run")
    new, old = cli(*args), cli(*args, spelling=OLD_SETUP)
    assert (new.returncode, old.returncode) == (0, 0), old.stderr
    assert json.loads(old.stdout) == json.loads(new.stdout)
    assert json.loads(old.stdout)["commands"][0] == f"{VENV_PYTHON} -m venv {target}"
    help_text = subprocess.run([str(VENV_PYTHON), "-m", "scl_deeplab.model_core", "--help"], capture_output=True,
                               text=True, timeout=120, check=True).stdout
    assert "setup-runtime" in help_text and "scl_deeplab.runtime.setup" in help_text


@pytest.mark.parametrize("python, numpy, pins", [
    ((3, 11, 2), "1.24.2", ("numpy<2",)),  # Debian 12: keep its numpy 1.x
    ((3, 12, 3), "", ("numpy<2",)),
    ((3, 13, 5), "2.2.4", ()),  # Debian 13: its own numpy 2 stays
    ((3, 13, 5), "", ()),  # numpy 1.x has no wheels for 3.13
    ((3, 11, 9), "2.1.0", ()),  # a base that already moved to numpy 2
])
def test_numpy_is_pinned_below_2_only_where_the_base_python_has_numpy_1(python, numpy, pins):
    assert rp.numpy_requirements(python, numpy) == pins


def test_plan_for_a_python_3_13_base_with_numpy_2_pins_no_numpy(tmp_path, monkeypatch):
    base = rp.BasePython("/usr/bin/python3.13", (3, 13, 5), False, "25.1", ("/usr/lib/python3/dist-packages",),
                         "2.2.4")
    monkeypatch.setattr(rp, "probe_python", lambda python: base)
    plan = rp.make_plan(tmp_path / "runtime", cuda="cpu", python=base.executable, system_site_packages=True)
    installs = [command for what, command in plan.commands if what.startswith("install")]
    assert installs[0][-2:] == ["torch==2.14.1", "torchvision==0.29.1"]
    assert installs[1][-3:] == ["rasterio>=1.3,<1.5", "matplotlib>=3.6,<4", "affine<3"]
    assert not any(arg.startswith("numpy") for command in installs for arg in command)


def test_cuda_auto_reads_the_driver_version_from_nvidia_smi(tmp_path):
    path = fake_nvidia_smi(tmp_path / "bin", "12.9")
    proc = cli("--target", str(tmp_path / "runtime"), "--python", str(VENV_PYTHON), "--dry-run", path=path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["variant"] == "cu128" and result["index_url"] == "https://download.pytorch.org/whl/cu128"
    assert result["reason"] == "nvidia-smi: driver supports CUDA 12.9: the newest CUDA build of torch==2.14.1 it runs"
    assert "https://download.pytorch.org/whl/cu128 torch==2.14.1" in result["commands"][1]
    assert "PyTorch wheels: cu128 (nvidia-smi: driver supports CUDA 12.9" in proc.stderr


@pytest.mark.parametrize("cuda, tag, reason", [
    ("13.2", "cu130", "driver supports CUDA 13.2: the newest CUDA build"),
    ("12.6", "cu126", "driver supports CUDA 12.6: the newest CUDA build"),
    ("12.4", "cpu", "needs CUDA 12.6 or newer: CPU wheels (update the NVIDIA driver"),
    (None, "cpu", "no nvidia-smi on PATH (no NVIDIA driver): CPU wheels"),
])
def test_cuda_auto_picks_the_newest_build_the_driver_runs(tmp_path, monkeypatch, cuda, tag, reason):
    path = fake_nvidia_smi(tmp_path / "bin", cuda) if cuda else str(tmp_path)
    monkeypatch.setenv("PATH", path)
    variant = rp.choose_variant("auto")
    assert variant.tag == tag and reason in variant.reason


def test_unknown_cuda_and_a_folder_in_the_way_are_refused(tmp_path):
    proc = cli("--target", str(tmp_path / "runtime"), "--cuda", "gpu", "--dry-run")
    assert proc.returncode == 1 and 'Unknown --cuda "gpu": use auto, cpu or a PyTorch CUDA tag' in proc.stderr
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    proc = cli("--target", str(tmp_path / "data"), "--cuda", "cpu")
    assert proc.returncode == 1 and "exists and is not a Python venv" in proc.stderr
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["keep.txt"]


def test_advice_names_the_way_out():
    assert "--find-links" in sr.advice("NewConnectionError: [Errno -2] Name or service not known")
    assert "HTTPS_PROXY" in sr.advice("ProxyError('Cannot connect to proxy.')")
    assert "disk is full" in sr.advice("OSError: [Errno 28] No space left on device")
    assert "python3-venv" in sr.advice("Error: ensurepip is not available")


@pytest.fixture
def clean_settings(qgis_app, monkeypatch):
    """No runtime settings before, none left after."""
    from qgis.core import QgsSettings

    monkeypatch.delenv("SCL_DEEPLAB_RUNTIME", raising=False)
    monkeypatch.delenv("SCL_DEEPLAB_WORKER_PYTHON", raising=False)
    settings = QgsSettings()
    for key in ("scl_deeplab/runtime", "scl_deeplab/worker_python"):
        settings.remove(key)
    yield settings
    for key in ("scl_deeplab/runtime", "scl_deeplab/worker_python"):
        settings.remove(key)


def test_real_set_up_from_the_plugin_stores_the_worker_python(tmp_path, offline_pip, clean_settings):
    from scl_deeplab.plugin.runtime_setup import SetupRuntimeTask
    from scl_deeplab.runtime import settings

    target = tmp_path / "runtime"
    done = []
    task = SetupRuntimeTask(str(VENV_PYTHON), target, cuda="cpu", system_site_packages=True,
                            on_done=lambda ok, message: done.append((ok, message)))
    assert tuple(task.command[1:3]) == SETUP
    assert task.command[3:] == ["--target", str(target), "--cuda", "cpu", "--python", str(VENV_PYTHON),
                                "--json-lines", "--system-site-packages"]
    assert task.run(), task.error + "\n".join(task.messages)
    task.finished(True)

    python = target / "bin" / "python"
    assert task.result["worker_python"] == str(python) and task.result["torch_version"] == torch.__version__
    assert task.result["device"] == "cpu" and task.result["variant"] == "cpu"
    assert task.progress() == 100
    assert any(m.startswith("install PyTorch (cpu wheels): ") for m in task.messages)
    assert done == [(True, f"SCL DeepLab will run PyTorch with {python}.")]
    # The setting is where runtime/settings.py looks, and RUNTIME became auto.
    assert settings.worker_python() == str(python)
    assert settings.runtime_setting() == "auto" and clean_settings.value("scl_deeplab/runtime") == 0
    # pip found everything installed: the venv holds only the link to the base venv's packages.
    site = target / "lib" / PYTHON_X_Y / "site-packages"
    assert [p.name for p in site.iterdir()] == [sr.BASE_PTH]
    check = subprocess.run([str(python), "-c", "import sys, torch; print(torch.__version__, sys.prefix)"],
                           capture_output=True, text=True, check=True, timeout=120)
    assert check.stdout.split() == [torch.__version__, str(target)]


def test_failing_pip_says_what_failed_and_leaves_no_venv(tmp_path, offline_pip, clean_settings):
    from scl_deeplab.plugin.runtime_setup import SetupRuntimeTask

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    target = tmp_path / "runtime"
    done = []
    task = SetupRuntimeTask(str(SYSTEM_PYTHON), target, cuda="cpu", system_site_packages=True,
                            on_done=lambda ok, message: done.append((ok, message)))
    task.command += ["--find-links", str(wheels)]  # no index: pip fails at once instead of downloading
    assert not task.run()
    task.finished(False)
    assert task.error.startswith("Could not install PyTorch (cpu wheels) (exit code 1). The --find-links folder "
                                 "has no fitting wheel")
    assert "No matching distribution found for torch==2.14.1" in task.error
    assert done == [(False, task.error)]
    assert any(m == f"Removed the unfinished runtime {target}." for m in task.messages)
    assert not target.exists()
    assert clean_settings.value("scl_deeplab/worker_python") is None


def test_qgis_python_is_found_when_qgis_is_the_executable(monkeypatch):
    from scl_deeplab.plugin.runtime_setup import qgis_python

    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    python = qgis_python()
    assert python == f"{sys.base_prefix}/bin/{PYTHON_X_Y}"
    check = subprocess.run([python, "-c", "import qgis.core, sys; print(sys.prefix == sys.base_prefix)"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.stdout.strip() == "True", check.stderr


def test_cancel_ends_the_set_up_and_removes_the_venv(tmp_path, offline_pip, clean_settings):
    from scl_deeplab.plugin.runtime_setup import SetupRuntimeTask

    slow = tmp_path / "python"  # a Python whose venv creation hangs halfway
    slow.write_text('#!/bin/bash\nif [ "$2" = venv ]; then mkdir -p "${@: -1}/bin"; sleep 300; fi\n'
                    f'exec {VENV_PYTHON} "$@"\n', encoding="utf-8")
    slow.chmod(0o755)
    target = tmp_path / "runtime"
    task = SetupRuntimeTask(str(slow), target, cuda="cpu")
    finished = []
    thread = threading.Thread(target=lambda: finished.append(task.run()))
    thread.start()
    deadline = time.monotonic() + 60  # guards against hanging, not a speed test
    while not (target / "bin").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (target / "bin").exists()
    task.cancel()
    thread.join(30)
    assert finished == [False]
    assert task.error == "Canceled by the user; the unfinished runtime was removed."
    assert not target.exists()
