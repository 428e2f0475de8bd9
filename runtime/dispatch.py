"""Run model_core's jobs where RUNTIME says: in QGIS's own Python, or in the worker Python.

Either way an algorithm gets the same typed result: ``predict`` and ``train`` send their config with
``to_dict`` as a job (model_core/cli/job.py) and rebuild the result with ``from_dict``. In-process the
job's task runs right here; in the worker, ``WORKER_PYTHON -m scl_deeplab.model_core job`` reads the job
on stdin and answers in JSON lines (runtime/child.py), which are shown on the feedback as they come.
Errors keep their model_core class across the boundary, so algorithms handle both alike.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..model_core import errors as core_errors
from ..model_core.cli.job import job_description
from ..model_core.errors import Canceled, SclDeepLabError
from ..model_core.prediction.config import PredictConfig, PredictResult
from ..model_core.training.config import TrainConfig, TrainResult
from .child import module_command, run_child
from .errors import OnnxRuntimeMissingError, TorchMissingError, WorkerError
from .feedback import FeedbackProgress, show_record
from .interpreter import (
    onnxruntime_importable,
    onnxruntime_install_hint,
    this_python,
    torch_importable,
    torch_install_hint,
)
from .settings import WHERE, WORKER_PYTHON_ENV, runtime_setting, worker_python


def chosen_runtime() -> tuple[str, str]:
    """("in-process" or "worker", why), from the settings and what this Python has."""
    setting = runtime_setting()
    if setting != "auto":
        return setting, f"RUNTIME is {setting}"
    if torch_importable():
        return "in-process", "RUNTIME auto and PyTorch imports in QGIS's Python"
    if worker_python():
        return "worker", "RUNTIME auto and PyTorch is missing in QGIS's Python"
    return "in-process", "RUNTIME auto, PyTorch missing in QGIS's Python and no WORKER_PYTHON set"


def no_runtime_message() -> str:
    """What to do when neither QGIS's Python nor a worker can run the model."""
    return (
        f"{torch_install_hint()} Or point SCL DeepLab at another Python that has torch, torchvision and "
        f"rasterio: {WHERE} > Worker Python (or the environment variable {WORKER_PYTHON_ENV}), with Runtime "
        "auto or worker."
    )


def predict(scene: Path, checkpoint: Path, output: Path, config: PredictConfig, *, confidence: Path | None,
            feedback: Any) -> PredictResult:
    """``predict_scene_from_checkpoint`` in the chosen runtime."""
    args = {"scene": str(scene), "checkpoint": str(checkpoint), "output": str(output),
            "confidence": str(confidence) if confidence else None, "config": config.to_dict()}
    if checkpoint.suffix.lower() == ".onnx" and runtime_setting() != "worker":
        # ONNX Runtime needs no PyTorch: QGIS's own Python predicts, whatever torch's state.
        if not onnxruntime_importable():
            if not torch_importable():
                raise OnnxRuntimeMissingError(onnxruntime_install_hint())
        else:
            from ..model_core.cli.job import TASKS

            progress = FeedbackProgress(feedback)
            progress.feedback.pushDebugInfo("SCL DeepLab runtime: in-process (an .onnx model and ONNX Runtime).")
            return PredictResult.from_dict(TASKS["predict"](args, progress))
    return PredictResult.from_dict(run_task("predict", args, feedback))


def train(patches: Path, config: TrainConfig, output: Path, curves: Path, *, resume: Path | None, feedback: Any,
          processes: int = 1) -> TrainResult:
    """``train`` and its learning curves in the chosen runtime; above 1 ``processes`` under torchrun."""
    args = {"patches": str(patches), "config": config.to_dict(), "output": str(output), "curves": str(curves),
            "resume": str(resume) if resume else None}
    return TrainResult.from_dict(run_task("train", args, feedback, processes=processes))


def run_task(task: str, args: dict[str, Any], feedback: Any, processes: int = 1) -> dict[str, Any]:
    """Run a model_core job task in the chosen runtime; its result as a dict.

    ``processes`` above 1 starts torchrun with that many ranks (a child process even in in-process mode:
    the worker Python, else the interpreter of QGIS's own Python, which has torch).
    """
    progress = FeedbackProgress(feedback)
    feedback = progress.feedback
    runtime, why = chosen_runtime()
    if processes > 1:
        python = worker_python() if runtime == "worker" else _launcher_python()
        feedback.pushInfo(f"Starting torchrun with {processes} processes ({python}).")
        return run_in_worker(task, args, feedback, python=python, processes=processes,
                             keep_pythonpath=runtime != "worker")
    if runtime == "worker":
        feedback.pushDebugInfo(f"SCL DeepLab runtime: worker {worker_python()} ({why}).")
        return run_in_worker(task, args, feedback)
    if not torch_importable():
        raise TorchMissingError(no_runtime_message())
    feedback.pushDebugInfo(f"SCL DeepLab runtime: in-process ({why}).")
    from ..model_core.cli.job import TASKS

    return TASKS[task](args, progress)


def _launcher_python() -> str:
    """The interpreter of QGIS's own Python, to start torchrun from in-process mode."""
    python = this_python()
    if python is None:
        raise WorkerError(
            "Processes above 1 needs this Python's interpreter to start torchrun, and it was not found. Set "
            f"{WHERE} > Worker Python (or {WORKER_PYTHON_ENV}) and Runtime worker."
        )
    return python


def job_command(python: str, *, processes: int = 1, job_file: Path | None = None,
                keep_pythonpath: bool = False) -> tuple[list[str], dict[str, str]]:
    """The worker's command line and environment; above 1 ``processes`` each torchrun rank reads ``job_file``.

    Under torchrun every rank takes an equal share of the CPU cores.
    """
    command, env = module_command(python, "model_core", "job", keep_pythonpath=keep_pythonpath)
    if processes <= 1:
        return command, env
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [python, *launcher, *command[1:], str(job_file)], env


def run_in_worker(task: str, args: dict[str, Any], feedback: Any, *, python: str | None = None,
                  processes: int = 1, keep_pythonpath: bool = False) -> dict[str, Any]:
    """Run ``task`` in WORKER_PYTHON (or ``python``), showing its records on ``feedback``; cancel ends it."""
    python = python or worker_python()
    if not python:
        raise WorkerError(
            f"RUNTIME is worker but no worker Python is set. Set {WHERE} > Worker Python (or {WORKER_PYTHON_ENV}) "
            "to a Python with torch, torchvision and rasterio."
        )
    job = json.dumps(job_description(task, args))
    with tempfile.TemporaryDirectory(prefix="scl_deeplab_job_") as folder:
        job_file = Path(folder) / "job.json" if processes > 1 else None
        if job_file is not None:
            job_file.write_text(job, encoding="utf-8")
        command, env = job_command(python, processes=processes, job_file=job_file, keep_pythonpath=keep_pythonpath)
        progress = FeedbackProgress(feedback)
        try:
            ended = run_child(command, env, stdin_text="" if job_file else job,
                              on_record=lambda record: show_record(progress, record),
                              on_output=feedback.pushConsoleInfo, is_canceled=feedback.isCanceled)
        except OSError as exc:
            raise WorkerError(f"Cannot start the worker Python {python}: {exc.strerror or exc}. Check the Worker "
                              f"Python setting (or {WORKER_PYTHON_ENV}).") from exc
    if ended.canceled:
        raise Canceled("Canceled by the user.")
    if ended.error is not None:
        feedback.pushDebugInfo(str(ended.error.get("traceback", "")))
        raise _rebuilt(ended.error)
    if ended.result is None:
        tail = "\n".join(ended.tail) or "(no output)"
        raise WorkerError(
            f"The worker Python {python} stopped (exit code {ended.code}) without a result. Its last lines:\n"
            f"{tail}\nCheck that it has torch, torchvision and rasterio (run the Check runtime algorithm)."
        )
    return ended.result


def _rebuilt(error: dict[str, Any]) -> SclDeepLabError:
    """The child's error as the model_core error class it had there (``WorkerError`` for any other)."""
    kind = getattr(core_errors, str(error.get("kind")), None)
    if isinstance(kind, type) and issubclass(kind, SclDeepLabError) and error.get("known", True):
        return kind(error["message"])
    return WorkerError(error["message"])
