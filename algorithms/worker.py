"""Where the model work runs: in QGIS's own Python, or in a worker Python that has PyTorch.

RUNTIME is ``auto`` (in-process when torch imports here, else the worker), ``in-process`` or ``worker``;
WORKER_PYTHON is the interpreter with torch, torchvision and rasterio. Both are QGIS settings (Processing >
Options > Providers > SCL DeepLab, keys ``scl_deeplab/runtime`` and ``scl_deeplab/worker_python``);
the environment variables SCL_DEEPLAB_RUNTIME and SCL_DEEPLAB_WORKER_PYTHON override them (for qgis_process).

Either way an algorithm calls ``run_task(task, args, feedback)`` with the same arguments and gets the same
result: in-process it calls model_core's job task directly; in the worker it runs
``WORKER_PYTHON -m scl_deeplab.model_core job`` and follows its JSON lines (model_core/job.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsSettings

from .base import FeedbackProgress, onnxruntime_install_hint, torch_install_hint

RUNTIMES = ("auto", "in-process", "worker")
RUNTIME_KEY, WORKER_PYTHON_KEY = "scl_deeplab/runtime", "scl_deeplab/worker_python"
RUNTIME_ENV, WORKER_PYTHON_ENV = "SCL_DEEPLAB_RUNTIME", "SCL_DEEPLAB_WORKER_PYTHON"
PACKAGE = __package__.rsplit(".", 1)[0]  # "scl_deeplab": the plugin folder's name
STOP_GRACE_S = 5.0  # after SIGTERM the child removes its temporary files; then SIGKILL


def runtime_setting() -> str:
    """RUNTIME from the environment, else the QGIS setting, else "auto"."""
    value = os.environ.get(RUNTIME_ENV) or QgsSettings().value(RUNTIME_KEY, "auto")
    if isinstance(value, int) or str(value).isdigit():  # Processing's options dialog stores the index
        value = RUNTIMES[int(value)] if int(value) < len(RUNTIMES) else "auto"
    value = str(value).strip().lower()
    if value not in RUNTIMES:
        raise QgsProcessingException(
            f'Unknown SCL DeepLab runtime "{value}". Set {RUNTIME_ENV} or Processing > Options > Providers > '
            f"SCL DeepLab > Runtime to one of: {', '.join(RUNTIMES)}."
        )
    return value


def worker_python() -> str:
    """WORKER_PYTHON from the environment, else the QGIS setting; "" when not set."""
    return str(os.environ.get(WORKER_PYTHON_ENV) or QgsSettings().value(WORKER_PYTHON_KEY, "") or "").strip()


def torch_in_process() -> bool:
    """True when QGIS's own Python can import torch and torchvision."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


def onnx_in_process() -> bool:
    """True when QGIS's own Python can import onnxruntime (enough to predict with .onnx models)."""
    return importlib.util.find_spec("onnxruntime") is not None


def chosen_runtime() -> tuple[str, str]:
    """("in-process" or "worker", why), from the settings and what this Python has."""
    setting = runtime_setting()
    if setting != "auto":
        return setting, f"RUNTIME is {setting}"
    if torch_in_process():
        return "in-process", "RUNTIME auto and PyTorch imports in QGIS's Python"
    if worker_python():
        return "worker", "RUNTIME auto and PyTorch is missing in QGIS's Python"
    return "in-process", "RUNTIME auto, PyTorch missing in QGIS's Python and no WORKER_PYTHON set"


def no_runtime_message() -> str:
    """What to do when neither QGIS's Python nor a worker can run the model."""
    return (
        f"{torch_install_hint()} Or point SCL DeepLab at another Python that has torch, torchvision and "
        f"rasterio: Processing > Options > Providers > SCL DeepLab > Worker Python (or the environment "
        f"variable {WORKER_PYTHON_ENV}), with Runtime auto or worker."
    )


def run_task(task: str, args: dict[str, Any], feedback: QgsProcessingFeedback | None,
             processes: int = 1) -> dict[str, Any]:
    """Run a model_core job task in the chosen runtime; its result as a dict.

    ``processes`` above 1 starts torchrun with that many ranks (a child process even in-process mode:
    the worker Python, else a Python interpreter beside QGIS's own that has torch).
    """
    feedback = feedback or QgsProcessingFeedback()
    runtime, why = chosen_runtime()
    if processes > 1:
        python = worker_python() if runtime == "worker" else launcher_python()
        feedback.pushInfo(f"Starting torchrun with {processes} processes ({python}).")
        return run_in_worker(task, args, feedback, python=python, processes=processes,
                             keep_pythonpath=runtime != "worker")
    if runtime == "worker":
        feedback.pushDebugInfo(f"SCL DeepLab runtime: worker {worker_python()} ({why}).")
        return run_in_worker(task, args, feedback)
    if not torch_in_process():
        raise QgsProcessingException(no_runtime_message())
    feedback.pushDebugInfo(f"SCL DeepLab runtime: in-process ({why}).")
    from ..model_core.cli.job import TASKS

    return TASKS[task](args, FeedbackProgress(feedback))


def launcher_python() -> str:
    """The interpreter of this very Python installation, to start torchrun from in-process mode.

    Embedded in QGIS, ``sys.executable`` is whatever ``python3`` comes first on PATH (or QGIS itself),
    so the interpreter is looked up in ``sys.prefix`` for this Python's version.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = Path(sys.prefix)
    candidates = [prefix / "bin" / f"python{version}", prefix / "bin" / "python3", prefix / "python.exe",
                  Path(sys.executable)]
    for candidate in candidates:
        if candidate.is_file() and candidate.name.lower().startswith("python"):
            return str(candidate)
    raise QgsProcessingException(
        f"Processes above 1 needs this Python's interpreter (python{version}) to start torchrun, and it was not "
        f"found under {prefix}. Set Processing > Options > Providers > SCL DeepLab > Worker Python (or "
        f"{WORKER_PYTHON_ENV}) and Runtime worker."
    )


def worker_command(python: str, *, processes: int = 1, job_file: Path | None = None,
                   keep_pythonpath: bool = False) -> tuple[list[str], dict[str, str]]:
    """The child's command line and environment: the plugin folder's parent on PYTHONPATH, nothing of QGIS's.

    With ``processes`` above 1 the job runs under torchrun on this machine, each rank reading ``job_file``
    and taking an equal share of the CPU cores; ``keep_pythonpath`` keeps this Python's PYTHONPATH
    (in-process mode, where QGIS's Python finds torch through it).
    """
    package_dir = Path(sys.modules[PACKAGE].__file__).parent  # not resolved: the folder may be a link
    drop = {"PYTHONHOME"} if keep_pythonpath else {"PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_dir.parent), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    job = [f"{package_dir.name}.model_core", "job"]
    if processes <= 1:
        return [python, "-m", *job], env
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [python, *launcher, "-m", *job, str(job_file)], env


def _pump(stream, sink: queue.Queue, tag: str) -> None:
    for line in iter(stream.readline, ""):
        sink.put((tag, line))
    sink.put((tag, None))


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc; empty elsewhere). torchrun starts its ranks in new sessions."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop(proc: subprocess.Popen) -> None:
    """End the child and all its descendants: SIGTERM to the group, SIGKILL to whatever lingers."""
    if proc.poll() is not None:
        return
    if sys.platform.startswith("win"):
        proc.kill()
    else:
        below = _descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            _kill(below, signal.SIGTERM)  # torchrun's ranks are in sessions of their own
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _kill(below, signal.SIGKILL)  # no-op for the ones that ended
    proc.wait()


def run_in_worker(task: str, args: dict[str, Any], feedback: QgsProcessingFeedback, *, python: str | None = None,
                  processes: int = 1, keep_pythonpath: bool = False) -> dict[str, Any]:
    """Run ``task`` in WORKER_PYTHON (or ``python``), mapping its JSON lines onto ``feedback``; cancel ends it.

    With ``processes`` above 1 under torchrun: the job goes in a temporary file every rank reads, and
    rank 0 reports.
    """
    with tempfile.TemporaryDirectory(prefix="scl_deeplab_job_") as folder:
        job_file = Path(folder) / "job.json" if processes > 1 else None
        return _run_child(task, args, feedback, python or worker_python(), processes, job_file, keep_pythonpath)


def _run_child(task: str, args: dict[str, Any], feedback: QgsProcessingFeedback, python: str, processes: int,
               job_file: Path | None, keep_pythonpath: bool) -> dict[str, Any]:
    from ..model_core.cli.job import job_description

    if not python:
        raise QgsProcessingException(
            f"RUNTIME is worker but no worker Python is set. Set Processing > Options > Providers > SCL DeepLab > "
            f"Worker Python (or {WORKER_PYTHON_ENV}) to a Python with torch, torchvision and rasterio."
        )
    job = json.dumps(job_description(task, args))
    if job_file is not None:
        job_file.write_text(job, encoding="utf-8")
    command, env = worker_command(python, processes=processes, job_file=job_file, keep_pythonpath=keep_pythonpath)
    options: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("win"):
        options = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", env=env, **options)
    except OSError as exc:
        raise QgsProcessingException(
            f"Cannot start the worker Python {python}: {exc.strerror or exc}. Check the Worker Python setting "
            f"(or {WORKER_PYTHON_ENV})."
        ) from exc
    lines: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, lines, tag), daemon=True).start()
    try:
        proc.stdin.write("" if job_file else job)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at once; its stderr says why
    result, error, stderr_tail, open_streams = None, None, deque(maxlen=20), 2
    try:
        while open_streams:
            if feedback.isCanceled():
                _stop(proc)
                raise QgsProcessingException("Canceled by the user.")
            try:
                tag, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
            elif tag == "err":
                stderr_tail.append(line.rstrip())
                feedback.pushConsoleInfo(line.rstrip())
            else:
                record = _record(line, feedback)
                kind = record.get("type")
                if kind == "progress":
                    feedback.setProgress(float(record["percent"]))
                elif kind == "info":
                    feedback.pushInfo(record["message"])
                elif kind == "warn":
                    feedback.pushWarning(record["message"])
                elif kind == "result":
                    result = record["result"]
                elif kind == "error":
                    error = record
        code = proc.wait()
    finally:
        _stop(proc)
        if not open_streams:  # both pumps are done; closing under a blocked reader could hang
            proc.stdout.close()
            proc.stderr.close()
    if error is not None:
        feedback.pushDebugInfo(error.get("traceback", ""))
        raise QgsProcessingException(error["message"])
    if result is None:
        tail = "\n".join(stderr_tail) or "(no output)"
        raise QgsProcessingException(
            f"The worker Python {python} stopped (exit code {code}) without a result. Its last lines:\n{tail}\n"
            "Check that it has torch, torchvision and rasterio (run the Check runtime algorithm)."
        )
    return result


def _record(line: str, feedback: QgsProcessingFeedback) -> dict[str, Any]:
    """One JSON line from the child; anything else is passed on to the log."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        feedback.pushConsoleInfo(line.rstrip())
        return {}
    return record


def predict_in_runtime(scene: Path, checkpoint: Path, output: Path, config: dict[str, Any], *,
                       confidence_path: Path | None, feedback: QgsProcessingFeedback) -> SimpleNamespace:
    """``predict_scene_from_checkpoint`` in the chosen runtime; ``config`` holds PredictConfig's fields."""
    config = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in config.items()}
    args = {"scene": scene, "checkpoint": checkpoint, "output": output, "confidence": confidence_path,
            "config": config}
    if checkpoint.suffix.lower() == ".onnx" and onnx_in_process() and runtime_setting() != "worker":
        # ONNX Runtime needs no PyTorch: QGIS's own Python predicts, whatever torch's state.
        from ..model_core.cli.job import TASKS

        feedback.pushDebugInfo("SCL DeepLab runtime: in-process (an .onnx model and ONNX Runtime imports here).")
        return SimpleNamespace(**TASKS["predict"](args, FeedbackProgress(feedback)))
    if checkpoint.suffix.lower() == ".onnx" and chosen_runtime()[0] == "in-process" and not torch_in_process():
        raise QgsProcessingException(onnxruntime_install_hint())
    return SimpleNamespace(**run_task("predict", args, feedback))
