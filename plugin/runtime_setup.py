"""The "Set up PyTorch runtime…" menu action: a worker Python for SCL DeepLab, made without touching QGIS's Python.

It runs ``python -m scl_deeplab.model_core setup-runtime`` (model_core/setup_runtime.py) in a background
task with a Python interpreter of the kind QGIS runs (see ``qgis_python``), into a venv in the QGIS profile
folder, and on success stores that venv's Python as WORKER_PYTHON (algorithms/worker.py). Everything but
the dialogs is plain functions and a QgsTask, so tests drive it without a window.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsProcessingException, QgsSettings, QgsTask

from ..algorithms.worker import RUNTIME_KEY, RUNTIMES, WORKER_PYTHON_KEY, runtime_setting, worker_command

LOG_TAG = "SCL DeepLab"
RUNTIME_FOLDER = ("scl_deeplab", "pytorch-runtime")  # inside the QGIS profile folder


def qgis_python() -> str:
    """A standalone interpreter of the Python QGIS embeds, to make the venv from.

    Inside QGIS ``sys.executable`` is usually QGIS itself, not a Python, so look where each platform puts
    the interpreter: beside the running Python's prefix (Linux ``/usr/bin/python3.X``, OSGeo4W's
    ``apps/Python3X/python.exe``), in QGIS.app's ``Contents/MacOS/bin``, then ``python3`` on PATH.
    """
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix, program_dir = Path(sys.prefix), Path(sys.executable).parent
    candidates = [prefix / "python.exe"] if sys.platform.startswith("win") else [
        prefix / "bin" / f"python{version}", prefix / "bin" / "python3", program_dir / "bin" / "python3",
        Path("/usr/bin") / f"python{version}",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(f"python{version}") or shutil.which("python3") or shutil.which("python") or "python3"


def default_target() -> Path:
    """The runtime's folder in the active QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()).joinpath(*RUNTIME_FOLDER)


def setup_command(python: str, target: Path, *, cuda: str = "auto", system_site_packages: bool = False,
                  dry_run: bool = False) -> tuple[list[str], dict[str, str]]:
    """The setup-runtime command line (JSON lines on stdout) and its environment, as the worker gets them."""
    command, env = worker_command(python)
    command[-1:] = ["setup-runtime", "--target", str(target), "--cuda", cuda, "--python", python, "--json-lines"]
    command += ["--system-site-packages"] * system_site_packages + ["--dry-run"] * dry_run
    return command, env


def parse_record(line: str) -> dict[str, Any]:
    """One JSON line of setup-runtime's output; other output becomes an info record."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    return record if isinstance(record, dict) else {"type": "info", "message": line.rstrip()}


def plan_setup(python: str, target: Path, *, cuda: str = "auto") -> dict[str, Any]:
    """What setup-runtime would do (its dry run): the wheels chosen and why, and the commands."""
    command, env = setup_command(python, target, cuda=cuda, dry_run=True)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    except OSError as exc:
        raise RuntimeError(f"Cannot run {python}: {exc.strerror or exc}.") from exc
    records = [parse_record(line) for line in proc.stdout.splitlines() if line.strip()]
    for record in records:
        if record.get("type") == "result":
            return record["result"]
        if record.get("type") == "error":
            raise RuntimeError(record["message"])
    raise RuntimeError(f"{python} could not run the set-up (exit code {proc.returncode}): {proc.stderr[-1000:]}")


def store_runtime(worker_python: str) -> str:
    """Save WORKER_PYTHON (and RUNTIME auto when unset) in QGIS's settings; a sentence for the user."""
    settings = QgsSettings()
    settings.setValue(WORKER_PYTHON_KEY, worker_python)
    if settings.value(RUNTIME_KEY, None) in (None, ""):
        settings.setValue(RUNTIME_KEY, RUNTIMES.index("auto"))  # Processing's options store the index
    try:  # Processing's options dialog keeps its own copy: refresh it, or its OK would write the old value back
        from processing.core.ProcessingConfig import ProcessingConfig

        for key in (RUNTIME_KEY, WORKER_PYTHON_KEY):
            for setting in ProcessingConfig.settings.values():
                if getattr(setting, "qname", None) == key:
                    setting.read()
    except ImportError:
        pass
    message = f"SCL DeepLab will run PyTorch with {worker_python}."
    try:
        runtime = runtime_setting()
    except QgsProcessingException as exc:  # an unknown value in SCL_DEEPLAB_RUNTIME
        return f"{message} {exc}"
    if runtime == "in-process":
        message += (" Runtime is set to in-process: change it to auto or worker in Processing > Options > "
                    "Providers > SCL DeepLab to use it.")
    return message


class SetupRuntimeTask(QgsTask):
    """Runs setup-runtime in the background: progress in the task manager, log lines in the message log."""

    def __init__(self, python: str, target: Path, *, cuda: str = "auto", system_site_packages: bool = False,
                 on_done: Callable[[bool, str], None] | None = None) -> None:
        super().__init__(f"Set up PyTorch runtime in {target}", QgsTask.CanCancel)
        self.command, self.env = setup_command(python, target, cuda=cuda, system_site_packages=system_site_packages)
        self.on_done = on_done
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.messages: list[str] = []
        self._proc: subprocess.Popen | None = None

    def run(self) -> bool:
        """In the task's thread: run the command and follow its JSON lines."""
        try:
            # Log lines on stderr join the JSON lines: one pipe, so neither can fill up and block the child.
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          env=self.env, start_new_session=True)
        except OSError as exc:
            self.error = f"Cannot run {self.command[0]}: {exc.strerror or exc}."
            return False
        for line in self._proc.stdout:
            record = parse_record(line)
            kind = record.get("type")
            if kind == "progress":
                self.setProgress(float(record["percent"]))
            elif kind in ("info", "warn"):
                self.messages.append(record["message"])
                QgsMessageLog.logMessage(record["message"], LOG_TAG,
                                         Qgis.Warning if kind == "warn" else Qgis.Info, notifyUser=False)
            elif kind == "result":
                self.result = record["result"]
            elif kind == "error":
                self.error = record["message"]
        code = self._proc.wait()
        if self.result is None and not self.error:
            tail = "\n".join(self.messages[-10:])
            self.error = ("Canceled; the unfinished runtime was removed." if self.isCanceled()
                          else f"The set-up stopped (exit code {code}) without a result:\n{tail}")
        return self.result is not None

    def cancel(self) -> None:
        """End the set-up and its pip (the whole process group); it removes the unfinished venv."""
        if self._proc is not None and self._proc.poll() is None:
            if sys.platform.startswith("win"):
                self._proc.terminate()
            else:
                os.killpg(self._proc.pid, signal.SIGTERM)
        super().cancel()

    def finished(self, result: bool) -> None:
        """In the main thread: store WORKER_PYTHON on success and tell the user either way."""
        message = store_runtime(self.result["worker_python"]) if result else self.error
        if self.on_done is not None:
            self.on_done(result, message)
