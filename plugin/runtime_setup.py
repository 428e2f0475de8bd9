"""The "Set up PyTorch runtime…" menu action: a worker Python for SCL DeepLab, made without touching QGIS's Python.

It runs ``python -m scl_deeplab.runtime.setup --json-lines`` (runtime/setup.py) through the runtime's child
runner in a background task, with the interpreter of QGIS's own Python, into a venv in the QGIS profile
folder, and on success stores that venv's Python as WORKER_PYTHON (runtime/settings.py). Everything but
the dialogs is plain functions and a QgsTask, so tests drive it without a window.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask

from ..runtime.child import module_command, run_child
from ..runtime.errors import RuntimeSetupError
from ..runtime.interpreter import this_python
from ..runtime.settings import store_worker_python

LOG_TAG = "SCL DeepLab"
RUNTIME_FOLDER = ("scl_deeplab", "pytorch-runtime")  # inside the QGIS profile folder
SETUP_MODULE = "runtime.setup"
CLEAN_UP_S = 120.0  # after cancel the set-up removes its half-made venv, which may hold gigabytes of CUDA


def qgis_python() -> str:
    """The interpreter to make the venv from: that of QGIS's own Python, else python3 on PATH."""
    return this_python() or shutil.which("python3") or "python3"


def default_target() -> Path:
    """The runtime's folder in the active QGIS profile."""
    return Path(QgsApplication.qgisSettingsDirPath()).joinpath(*RUNTIME_FOLDER)


def setup_command(python: str, target: Path, *, cuda: str = "auto", system_site_packages: bool = False,
                  dry_run: bool = False) -> tuple[list[str], dict[str, str]]:
    """The set-up's command line (JSON lines on stdout) and its environment."""
    options = ["--target", str(target), "--cuda", cuda, "--python", python, "--json-lines"]
    options += ["--system-site-packages"] * system_site_packages + ["--dry-run"] * dry_run
    return module_command(python, SETUP_MODULE, *options)


def plan_setup(python: str, target: Path, *, cuda: str = "auto") -> dict[str, Any]:
    """What the set-up would do (its dry run): the wheels chosen and why, and the commands."""
    command, env = setup_command(python, target, cuda=cuda, dry_run=True)
    try:
        ended = run_child(command, env)
    except OSError as exc:
        raise RuntimeSetupError(f"Cannot run {python}: {exc.strerror or exc}.") from exc
    if ended.error is not None:
        raise RuntimeSetupError(ended.error["message"])
    if ended.result is None:
        tail = "\n".join(ended.tail)
        raise RuntimeSetupError(f"{python} could not run the set-up (exit code {ended.code}): {tail[-1000:]}")
    return ended.result


class SetupRuntimeTask(QgsTask):
    """Runs the set-up in the background: progress in the task manager, log lines in the message log."""

    def __init__(self, python: str, target: Path, *, cuda: str = "auto", system_site_packages: bool = False,
                 on_done: Callable[[bool, str], None] | None = None) -> None:
        super().__init__(f"Set up PyTorch runtime in {target}", QgsTask.CanCancel)
        self.command, self.env = setup_command(python, target, cuda=cuda, system_site_packages=system_site_packages)
        self.on_done = on_done
        self.result: dict[str, Any] | None = None
        self.error = ""
        self.messages: list[str] = []

    def _log(self, message: str, level: Any = Qgis.Info) -> None:
        self.messages.append(message)
        QgsMessageLog.logMessage(message, LOG_TAG, level, notifyUser=False)

    def _record(self, record: dict[str, Any]) -> None:
        if record.get("type") == "progress":
            self.setProgress(float(record["percent"]))
        elif record.get("type") in ("info", "warn"):
            self._log(str(record["message"]), Qgis.Warning if record["type"] == "warn" else Qgis.Info)

    def run(self) -> bool:
        """In the task's thread: run the set-up and follow its JSON lines; cancel ends it (and its pip)."""
        try:
            ended = run_child(self.command, self.env, on_record=self._record, on_output=self._log,
                              is_canceled=self.isCanceled, grace_s=CLEAN_UP_S)
        except OSError as exc:
            self.error = f"Cannot run {self.command[0]}: {exc.strerror or exc}."
            return False
        self.result = ended.result
        if ended.error is not None:
            self.error = str(ended.error["message"])
        elif self.result is None:
            tail = "\n".join(self.messages[-10:])
            self.error = ("Canceled; the unfinished runtime was removed." if ended.canceled
                          else f"The set-up stopped (exit code {ended.code}) without a result:\n{tail}")
        return self.result is not None and ended.error is None

    def finished(self, result: bool) -> None:
        """In the main thread: store WORKER_PYTHON on success and tell the user either way."""
        message = store_worker_python(self.result["worker_python"]) if result else self.error
        if self.on_done is not None:
            self.on_done(result, message)
