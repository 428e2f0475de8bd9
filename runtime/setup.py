"""Make a worker Python for the plugin: a venv with the pinned PyTorch, torchvision and rasterio.

``python -m scl_deeplab.runtime.setup --target FOLDER`` (also spelt ``python -m scl_deeplab.model_core
setup-runtime``); the plugin's *Set up PyTorch runtime* runs it with ``--json-lines`` (runtime/child.py).

The venv comes from a base Python (``--python``, else this Python's interpreter, else ``python3`` on
PATH) and pip installs only into it, never into QGIS's own site-packages. PyTorch comes from its own
wheel index, CPU or CUDA: with ``--cuda auto`` the CUDA version that ``nvidia-smi`` reports for the
driver picks the newest CUDA build it can run, and the choice and its reason are reported (runtime/plan.py
decides what runs, this module runs it).
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
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..model_core.errors import Canceled, SclDeepLabError
from ..model_core.progress import SILENT, Progress
from .child import PACKAGE_DIR
from .errors import RuntimeSetupError
from .plan import CUDA_TAGS, Plan, child_env, describe, make_plan

log = logging.getLogger(__name__)

BASE_PTH = "_scl_deeplab_base.pth"  # in the new venv: the base venv's site-packages

VERIFY = (
    "import json\n"
    "from {package}.model_core.cli.environment import package_version, runtime_report\n"
    "report = runtime_report()\n"
    "report['matplotlib_version'] = package_version('matplotlib')\n"
    "print(json.dumps(report))\n"
)


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
