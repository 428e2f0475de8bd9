"""Make a worker Python for the plugin: a venv with the pinned PyTorch, torchvision and rasterio.

``python -m scl_deeplab.runtime.setup --target FOLDER`` (also spelt ``python -m scl_deeplab.model_core
setup-runtime``); the plugin's *Set up PyTorch runtime* runs it with ``--json-lines`` (runtime/child.py).

The venv comes from a base Python (``--python``, else this Python's interpreter, else ``python3`` on
PATH) and pip installs only into it, never into QGIS's own site-packages. PyTorch comes
from its own wheel index, CPU or CUDA: with ``--cuda auto`` the CUDA version that ``nvidia-smi`` reports
for the driver picks the newest CUDA build it can run, and the choice and its reason are reported.
Afterwards the venv's Python imports everything and reports its versions and devices; on failure a venv
this command created is removed again. ``--dry-run`` prints the commands and runs none of them.

With ``--system-site-packages`` the venv also sees the base Python's packages (those of the venv the base
Python lives in, too) and reuses its pip, so pip installs only what is missing: nothing downloads when
the base already has the pinned versions.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model_core.errors import Canceled, SclDeepLabError
from ..model_core.progress import SILENT, Progress
from .child import PACKAGE_DIR
from .errors import RuntimeSetupError
from .interpreter import this_python

log = logging.getLogger(__name__)

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
BASE_PTH = "_scl_deeplab_base.pth"

PROBE = (
    "import json, sys, sysconfig, importlib.util, importlib.metadata\n"
    "pip = importlib.util.find_spec('pip') is not None and __import__('pip').__version__\n"
    "numpy = importlib.util.find_spec('numpy') is not None and importlib.metadata.version('numpy')\n"
    "print(json.dumps({'executable': sys.executable, 'version': list(sys.version_info[:3]),\n"
    "    'is_venv': sys.prefix != sys.base_prefix, 'pip': pip or '', 'numpy': numpy or '',\n"
    "    'site_packages': sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})}))\n"
)
VERIFY = (
    "import json\n"
    "from {package}.model_core.cli.environment import package_version, runtime_report\n"
    "report = runtime_report()\n"
    "report['matplotlib_version'] = package_version('matplotlib')\n"
    "print(json.dumps(report))\n"
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


def _run_step(what: str, command: list[str], progress: Progress) -> None:
    """Run one command, passing its output on; RuntimeSetupError with advice when it fails."""
    progress.info(f"{what}: {shlex.join(command)}")
    tail: deque[str] = deque(maxlen=25)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=child_env())
    except OSError as exc:
        raise RuntimeSetupError(f"Could not {what}: {command[0]} does not run ({exc.strerror or exc}).") from exc
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail.append(line)
            log.debug(line)
            if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "ERROR", "WARNING")):
                progress.info(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    if code != 0:
        output = "\n".join(tail)
        raise RuntimeSetupError(f"Could not {what} (exit code {code}). {advice(output)}\nLast output:\n{output}")


def advice(output: str) -> str:
    """What to try, from what pip or venv said."""
    text = output.lower()
    if "no space left" in text:
        return "The disk is full: free some space (PyTorch with CUDA needs several GB) or choose another --target."
    if "proxy" in text or "ssl" in text or "certificate" in text:
        return ("The connection through the proxy failed: set HTTPS_PROXY (and PIP_CERT for a company "
                "certificate) and run again.")
    if any(s in text for s in ("name or service not known", "temporary failure in name resolution",
                               "newconnectionerror", "connection refused", "network is unreachable")):
        return ("No connection to the package index: connect to the internet (or set HTTPS_PROXY), or download "
                "the wheels elsewhere with `pip download` and run again with --find-links FOLDER.")
    if "ensurepip" in text:
        return ("This Python cannot make venvs with pip: on Debian or Ubuntu install python3-venv, or give another "
                "Python with --python.")
    if ("no matching distribution" in text or "could not find a version" in text) and "looking in indexes" not in text:
        return "The --find-links folder has no fitting wheel: add wheels for this Python and platform to it."
    if "no matching distribution" in text or "could not find a version" in text:
        return ("No wheel fits this Python and platform: try --cuda cpu, another --cuda tag, or another Python "
                "with --python.")
    return "See pip's output below."


def _link_base(plan: Plan, progress: Progress) -> None:
    """Let the new venv see the packages of the venv its base Python lives in (a .pth file).

    Each folder is added as a site directory, so the .pth files in it count too, as they do for the base.
    """
    proc = subprocess.run([str(plan.worker_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, env=child_env())
    pth = Path(proc.stdout.strip()) / BASE_PTH
    pth.write_text("".join(f"import site; site.addsitedir({path!r})\n" for path in plan.link_base), encoding="utf-8")
    progress.info(f"The venv also sees the packages of {', '.join(plan.link_base)} ({pth.name}).")


def verify(worker: Path) -> dict[str, Any]:
    """Run the new venv's Python: it must import everything the worker needs; its runtime report."""
    env = child_env()
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    proc = subprocess.run([str(worker), "-c", VERIFY.format(package=PACKAGE_DIR.name)], capture_output=True,
                          text=True, timeout=300, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeSetupError(f"The new runtime's Python fails: {proc.stderr.strip()[-1500:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    missing = [name for name in ("torch", "torchvision", "rasterio", "numpy", "matplotlib")
               if report[f"{name}_version"].startswith("missing")]
    if missing:
        raise RuntimeSetupError(f"The new runtime cannot import {', '.join(missing)} although pip finished; "
                                "run again, or see pip's output in the log.")
    return report


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-able facts: the commands, the chosen wheels and why."""
    return {
        "target": str(plan.target), "worker_python": str(plan.worker_python),
        "base_python": plan.base.executable, "variant": plan.variant.tag, "reason": plan.variant.reason,
        "index_url": plan.variant.index_url or "", "reuse_venv": plan.reuse_venv,
        "commands": [shlex.join(command) for _, command in plan.commands],
        "linked_site_packages": list(plan.link_base),
    }


def run_plan(plan: Plan, progress: Progress = SILENT) -> dict[str, Any]:
    """Carry ``plan`` out and check the result; a venv it created is removed again on any failure."""
    started = time.monotonic()
    created, existed = False, plan.target.exists()
    steps = len(plan.commands) + 1
    try:
        for done, (what, command) in enumerate(plan.commands):
            progress.set_progress(100 * done / steps)
            created = created or command[1:3] == ["-m", "venv"]
            _run_step(what, command, progress)
            if command[1:3] == ["-m", "venv"] and plan.link_base:
                _link_base(plan, progress)
        progress.set_progress(100 * (steps - 1) / steps)
        progress.info(f"Checking {plan.worker_python}")
        report = verify(plan.worker_python)
    except BaseException:
        if created:
            shutil.rmtree(plan.target, ignore_errors=True)
            if existed:  # the user's empty folder stays, empty again
                plan.target.mkdir()
            progress.warn(f"Removed the unfinished runtime {plan.target}.")
        raise
    if plan.variant.tag.startswith("cu") and not report["cuda_available"]:
        progress.warn(f"PyTorch with {plan.variant.tag} is installed but sees no GPU: check the NVIDIA driver.")
    progress.set_progress(100)
    gpu = report["cuda_devices"] or ("Apple MPS" if report["mps_available"] else "none")
    progress.info(f"Ready: torch {report['torch_version']} (CUDA {report['cuda_version'] or 'none'}, GPU: {gpu}); "
                  f"WORKER_PYTHON = {plan.worker_python}")
    return {**describe(plan), "dry_run": False, "seconds": round(time.monotonic() - started, 1),
            **{key: report[key] for key in ("python", "torch_version", "torchvision_version", "rasterio_version",
                                            "numpy_version", "cuda_available", "cuda_version", "cuda_devices",
                                            "mps_available", "device", "precision")}}


def setup_runtime(target: Path, *, cuda: str = "auto", python: str | None = None, system_site_packages: bool = False,
                  find_links: Path | None = None, dry_run: bool = False,
                  progress: Progress = SILENT) -> dict[str, Any]:
    """Make (or update) the worker runtime in ``target``; with ``dry_run`` only say what would run."""
    plan = make_plan(target, cuda=cuda, python=python, system_site_packages=system_site_packages,
                     find_links=find_links)
    progress.info(f"PyTorch wheels: {plan.variant.tag} ({plan.variant.reason})")
    if dry_run:
        for what, command in plan.commands:
            progress.info(f"Would {what}: {shlex.join(command)}")
        return {**describe(plan), "dry_run": True}
    return run_plan(plan, progress)


def parser() -> argparse.ArgumentParser:
    """The command line's options."""
    p = argparse.ArgumentParser(
        prog=f"python -m {PACKAGE_DIR.name}.runtime.setup",
        description="Create a venv in --target from a base Python and pip-install the pinned PyTorch (CPU or CUDA "
        "wheels), torchvision, rasterio and matplotlib into it, then check it. Prints the worker Python to set "
        "as WORKER_PYTHON. Nothing is installed outside --target.",
    )
    p.add_argument("--target", required=True, type=Path, help="the venv folder (new, empty, or a runtime to update)")
    p.add_argument("--cuda", default="auto", help=f"auto (from nvidia-smi), cpu or a PyTorch CUDA tag: "
                   f"{', '.join(CUDA_TAGS)} (default auto)")
    p.add_argument("--python", help="the base Python (default: this one, or python3 on PATH)")
    p.add_argument("--system-site-packages", action="store_true",
                   help="let the venv see the base Python's packages; pip installs only what is missing")
    p.add_argument("--find-links", type=Path, metavar="FOLDER", help="install offline from a folder of wheels")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--json-lines", action="store_true",
                   help="report progress, log and result as JSON lines on stdout (as the worker's jobs do)")
    p.add_argument("-v", "--verbose", action="store_true", help="also log developer detail")
    return p


def _terminated(signum: int, frame: object) -> None:
    raise Canceled("Canceled by the user; the unfinished runtime was removed.")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and set up the runtime; exit code 0, 1 after an error, 130 when canceled."""
    from ..model_core.cli.job import JsonLinesProgress
    from ..model_core.cli.output import emit
    from ..model_core.progress import PrintProgress

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    # The plugin cancels with SIGTERM: raising here removes the half-made venv.
    signal.signal(signal.SIGTERM, _terminated)
    options = {"cuda": args.cuda, "python": args.python, "system_site_packages": args.system_site_packages,
               "find_links": args.find_links, "dry_run": args.dry_run}
    progress = JsonLinesProgress(sys.stdout) if args.json_lines else PrintProgress()
    try:
        result = setup_runtime(args.target, progress=progress, **options)
    except SclDeepLabError as exc:
        if args.json_lines:
            progress.send({"type": "error", "kind": type(exc).__name__, "message": str(exc), "known": True})
        else:
            log.error("Error: %s", exc)
        return 130 if isinstance(exc, Canceled) else 1
    if args.json_lines:
        progress.send({"type": "result", "result": result})
    else:
        emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
