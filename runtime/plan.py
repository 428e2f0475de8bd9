"""What the runtime set-up will run: which PyTorch wheels, facts about the base Python, the pins, the commands.

Nothing here installs anything: ``make_plan`` runs only the base Python (to ask its version, pip and numpy)
and ``nvidia-smi`` (to ask the driver's CUDA version). runtime/setup.py carries a plan out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RuntimeSetupError
from .interpreter import this_python

# The same pins as requirements.txt and constraints.txt (tests/test_setup_runtime.py compares them).
TORCH_REQUIREMENTS = ("torch==2.14.1", "torchvision==0.29.1")
KEEP = ("numpy<2", "affine<3")  # numpy<2 only where it fits the base Python: see numpy_requirements
# Python 3.13 (Debian 13, QGIS 3.40) has no numpy 1.x wheels; its own numpy is 2.x.
NUMPY_1_UNTIL = (3, 13)
# What the worker needs besides PyTorch: rasters, and matplotlib for the learning curves.
SUPPORT_REQUIREMENTS = ("rasterio>=1.3,<1.5", "matplotlib>=3.6,<4")
TORCH_INDEX = "https://download.pytorch.org/whl/{tag}"
# The CUDA builds published for the pinned torch, oldest first: update together with the pins.
CUDA_TAGS = ("cu126", "cu128", "cu130")

PROBE = (
    "import json, sys, sysconfig, importlib.util, importlib.metadata\n"
    "pip = importlib.util.find_spec('pip') is not None and __import__('pip').__version__\n"
    "numpy = importlib.util.find_spec('numpy') is not None and importlib.metadata.version('numpy')\n"
    "print(json.dumps({'executable': sys.executable, 'version': list(sys.version_info[:3]),\n"
    "    'is_venv': sys.prefix != sys.base_prefix, 'pip': pip or '', 'numpy': numpy or '',\n"
    "    'site_packages': sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})}))\n"
)


@dataclass(frozen=True)
class Variant:
    """Which PyTorch wheels: "cpu" or a CUDA tag such as "cu128", and why."""

    tag: str
    reason: str

    @property
    def index_url(self) -> str | None:
        """PyTorch's wheel index for the tag; None on macOS, where PyPI's wheels are the CPU and MPS ones."""
        if self.tag == "cpu" and sys.platform == "darwin":
            return None
        return TORCH_INDEX.format(tag=self.tag)


@dataclass(frozen=True)
class BasePython:
    """Facts about the interpreter the venv is made from."""

    executable: str
    version: tuple[int, ...]
    is_venv: bool
    pip: str
    site_packages: tuple[str, ...]
    numpy: str = ""  # the version its site-packages hold, "" when none


@dataclass(frozen=True)
class Plan:
    """Everything ``setup-runtime`` will do, in order."""

    target: Path
    base: BasePython
    variant: Variant
    system_site_packages: bool
    reuse_venv: bool
    commands: list[tuple[str, list[str]]] = field(default_factory=list)  # (what, argv)
    link_base: tuple[str, ...] = ()  # base venv site-packages seen through BASE_PTH

    @property
    def worker_python(self) -> Path:
        """The venv's interpreter: WORKER_PYTHON once the set-up is done."""
        return venv_python(self.target)


def venv_python(target: Path) -> Path:
    """The interpreter inside a venv folder."""
    return target / ("Scripts/python.exe" if sys.platform.startswith("win") else "bin/python")


def cuda_version_of(tag: str) -> tuple[int, int]:
    """(12, 8) for "cu128", (11, 8) for "cu118"."""
    digits = tag[2:]
    return int(digits[:-1]), int(digits[-1])


def driver_cuda_version() -> tuple[tuple[int, int] | None, str]:
    """The CUDA version the NVIDIA driver supports, from ``nvidia-smi``; None and why when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, "no nvidia-smi on PATH (no NVIDIA driver)"
    try:
        proc = subprocess.run([smi], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi did not run ({exc})"
    found = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", proc.stdout)
    if proc.returncode != 0 or found is None:
        return None, f"nvidia-smi reports no CUDA version (exit code {proc.returncode})"
    major, minor = int(found.group(1)), int(found.group(2))
    return (major, minor), f"nvidia-smi: driver supports CUDA {major}.{minor}"


def choose_variant(cuda: str) -> Variant:
    """The wheels for ``cuda`` ("auto", "cpu" or a tag such as "cu128")."""
    if cuda == "cpu" or re.fullmatch(r"cu\d{3}", cuda):
        return Variant(cuda, f"--cuda {cuda}")
    if cuda != "auto":
        raise RuntimeSetupError(f'Unknown --cuda "{cuda}": use auto, cpu or a PyTorch CUDA tag such as '
                                f"{CUDA_TAGS[-1]} (the part after /whl/ in PyTorch's install command).")
    if sys.platform == "darwin":
        return Variant("cpu", "macOS: PyPI's wheels, which use the Apple GPU (MPS) where there is one")
    version, why = driver_cuda_version()
    if version is None:
        return Variant("cpu", f"{why}: CPU wheels")
    usable = [tag for tag in CUDA_TAGS if cuda_version_of(tag) <= version]
    if not usable:
        oldest = ".".join(map(str, cuda_version_of(CUDA_TAGS[0])))
        return Variant("cpu", f"{why}, but {TORCH_REQUIREMENTS[0]} needs CUDA {oldest} or newer: CPU wheels "
                              "(update the NVIDIA driver to use the GPU)")
    return Variant(usable[-1], f"{why}: the newest CUDA build of {TORCH_REQUIREMENTS[0]} it runs")


def pick_base_python(given: str | None) -> str:
    """``given``, else this Python's interpreter, else python3 on PATH."""
    if given:
        return given
    found = this_python() or shutil.which("python3") or shutil.which("python")
    if found is None:
        raise RuntimeSetupError("Found no Python to make the venv from: give one with --python.")
    return found


def child_env() -> dict[str, str]:
    """The environment for venv, pip and the check: nothing of QGIS's Python paths, no --user installs."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    env["PIP_USER"] = "0"
    return env


def probe_python(python: str) -> BasePython:
    """Run ``python`` to learn its version, whether it is a venv and whether it has pip."""
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=60, env=child_env(),
                              check=False)
    except OSError as exc:
        raise RuntimeSetupError(f"Cannot run the base Python {python}: {exc.strerror or exc}. "
                                "Give another one with --python.") from exc
    if proc.returncode != 0:
        raise RuntimeSetupError(f"The base Python {python} failed (exit code {proc.returncode}): "
                                f"{proc.stderr.strip()[-500:]}. Give another one with --python.")
    facts = json.loads(proc.stdout)
    base = BasePython(shutil.which(python) or python, tuple(facts["version"]), facts["is_venv"], facts["pip"],
                      tuple(facts["site_packages"]), facts.get("numpy", ""))
    if base.version < (3, 10):
        raise RuntimeSetupError(f"{TORCH_REQUIREMENTS[0]} needs Python 3.10 or newer; {python} is "
                                f"{'.'.join(map(str, base.version))}. Give a newer one with --python.")
    return base


def numpy_requirements(python_version: tuple[int, ...], numpy_version: str) -> tuple[str, ...]:
    """``("numpy<2",)`` where the base Python has numpy 1.x, or none and is older than 3.13; else no pin.

    A base with numpy 2 (Debian 13) keeps its own: pip then leaves it alone under --system-site-packages.
    """
    if numpy_version:
        return ("numpy<2",) if numpy_version.split(".")[0] == "1" else ()
    return ("numpy<2",) if tuple(python_version[:2]) < NUMPY_1_UNTIL else ()


def pip_command(python: Path, requirements: tuple[str, ...], index_url: str | None,
                find_links: Path | None) -> list[str]:
    """One ``pip install`` into the venv; ``find_links`` installs from a wheel folder without any index."""
    command = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off"]
    if find_links is not None:
        command += ["--no-index", "--find-links", str(find_links)]
    elif index_url:
        command += ["--index-url", index_url]
    return command + list(requirements)


def make_plan(target: Path, *, cuda: str = "auto", python: str | None = None, system_site_packages: bool = False,
              find_links: Path | None = None) -> Plan:
    """Decide what to run; runs nothing but the base Python (to ask its version) and nvidia-smi."""
    target = Path(os.path.abspath(target))
    find_links = Path(os.path.abspath(find_links)) if find_links is not None else None
    reuse = (target / "pyvenv.cfg").is_file()
    if target.exists() and not reuse and (not target.is_dir() or any(target.iterdir())):
        raise RuntimeSetupError(f"{target} exists and is not a Python venv. Choose a new or empty folder "
                                "(an existing runtime folder is updated in place).")
    variant = choose_variant(cuda)
    base = probe_python(pick_base_python(python))
    # With the base's packages in view its pip is there too: no need to bootstrap one (ensurepip).
    reuse_pip = system_site_packages and bool(base.pip)
    venv = [base.executable, "-m", "venv"]
    venv += ["--system-site-packages"] * system_site_packages + ["--without-pip"] * reuse_pip + [str(target)]
    worker = venv_python(target)
    commands = [] if reuse else [("create the venv", venv)]
    numpy = numpy_requirements(base.version, base.numpy)
    keep = numpy + tuple(pin for pin in KEEP if not pin.startswith("numpy"))
    commands += [
        (f"install PyTorch ({variant.tag} wheels)",
         pip_command(worker, TORCH_REQUIREMENTS + numpy, variant.index_url, find_links)),
        ("install rasterio and matplotlib", pip_command(worker, SUPPORT_REQUIREMENTS + keep, None, find_links)),
    ]
    link = base.site_packages if system_site_packages and base.is_venv else ()
    return Plan(target, base, variant, system_site_packages, reuse, commands, link)


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-able facts: the commands, the chosen wheels and why."""
    return {
        "target": str(plan.target), "worker_python": str(plan.worker_python),
        "base_python": plan.base.executable, "variant": plan.variant.tag, "reason": plan.variant.reason,
        "index_url": plan.variant.index_url or "", "reuse_venv": plan.reuse_venv,
        "commands": [shlex.join(command) for _, command in plan.commands],
        "linked_site_packages": list(plan.link_base),
    }
