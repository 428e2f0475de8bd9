"""Run one task from a JSON job description and report it as JSON lines (the worker runtime's child side).

QGIS's Python need not have torch: the plugin (runtime/dispatch.py) starts ``python -m scl_deeplab.model_core
job`` with a Python that has, writes the job to its stdin and reads one JSON object per line from its stdout:

    {"type": "progress", "percent": 42.0}
    {"type": "info", "message": "..."}       {"type": "warn", "message": "..."}
    {"type": "result", "result": {...}}      {"type": "error", "kind": "InputError", "message": "...",
                                              "traceback": "..."}

A job is ``{"task": "predict", "args": {...}}``; see ``TASKS``. Its ``args["config"]`` is the task's
``PredictConfig`` or ``TrainConfig`` as ``to_dict`` gave it, and its result is the ``PredictResult`` or
``TrainResult`` as a dict, rebuilt on the other side with ``from_dict``. Cancel is the parent ending the
child's process group; outputs are written through ``atomic`` so nothing half-written stays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import Canceled, InputError, SclDeepLabError
from ..progress import Progress

JOB_FORMAT = "scl-deeplab-job"


class JsonLinesProgress:
    """Progress as JSON lines on a stream; percent only when it moved by a tenth of a percent."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._last = -1.0

    def send(self, record: dict[str, Any]) -> None:
        """Write one record as one line and flush it, so the parent sees it at once."""
        self._stream.write(json.dumps(record, default=str) + "\n")
        self._stream.flush()

    def set_progress(self, percent: float) -> None:
        percent = round(float(percent), 1)
        if percent != self._last:
            self._last = percent
            self.send({"type": "progress", "percent": percent})

    def is_canceled(self) -> bool:
        return False  # the parent cancels by ending this process

    def info(self, message: str) -> None:
        self.send({"type": "info", "message": message})

    def warn(self, message: str) -> None:
        self.send({"type": "warn", "message": message})


def _predict(args: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``predict_scene_from_checkpoint`` with the ``PredictConfig`` that ``to_dict`` sent."""
    from ..prediction.config import PredictConfig
    from ..prediction.predict import predict_scene_from_checkpoint

    result = predict_scene_from_checkpoint(
        args["scene"], args["checkpoint"], args["output"], PredictConfig.from_dict(args.get("config", {})),
        confidence_path=args.get("confidence"), progress=progress,
    )
    return result.to_dict()


def _train(args: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``train`` with the ``TrainConfig`` that ``to_dict`` sent, then the learning curves."""
    from ..training.config import TrainConfig
    from ..training.curves import write_curves
    from ..training.distributed import Ranks
    from ..training.train import train

    result = train(args["patches"], TrainConfig.from_dict(args.get("config", {})), args["output"],
                   resume=args.get("resume"), progress=progress)
    if not Ranks.from_env().is_main:
        return {}  # under torchrun rank 0 writes the curves and reports
    written = write_curves(result.history, Path(args["curves"]))
    return dataclasses.replace(result, curves=written["png"], history_csv=written["csv"]).to_dict()


def _export(args: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """``export_onnx`` of a checkpoint; the result's fields as plain values."""
    from ..net.onnx_export import export_onnx

    result = export_onnx(args["checkpoint"], args["output"], int8=bool(args.get("int8")),
                         patches=args.get("patches"), calibration_tiles=int(args.get("calibration_tiles", 32)),
                         resolution_m=float(args.get("resolution_m", 10.0)), progress=progress)
    return dataclasses.asdict(result)


def _environment(args: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from .environment import runtime_report

    return runtime_report()


TASKS: dict[str, Callable[[dict[str, Any], Progress], dict[str, Any]]] = {
    "predict": _predict,
    "train": _train,
    "export": _export,
    "environment": _environment,
}


def job_description(task: str, args: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able job for ``task``; paths become strings."""
    return {"format": JOB_FORMAT, "task": task, "args": json.loads(json.dumps(args, default=str))}


def run_job(job: dict[str, Any], out: IO[str]) -> int:
    """Run ``job``, reporting on ``out``; exit code 0 on success, 1 after an error record."""
    progress = JsonLinesProgress(out)
    try:
        task = TASKS.get(job.get("task", ""))
        if task is None:
            raise InputError(f'Unknown job task "{job.get("task")}"; this worker knows {", ".join(TASKS)}. '
                             "Is WORKER_PYTHON running the same SCL DeepLab version as QGIS?")
        result = task(job.get("args", {}), progress)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the parent as a record
        known = isinstance(exc, SclDeepLabError)
        progress.send({
            "type": "error",
            "kind": type(exc).__name__,
            "message": str(exc) if known else f"{type(exc).__name__}: {exc}",
            "known": known,
            "traceback": traceback.format_exc(),
        })
        return 1
    if int(os.environ.get("RANK", "0") or 0) == 0:  # under torchrun one result, from rank 0
        progress.send({"type": "result", "result": result})
    return 0


def _terminated(signum: int, frame: object) -> None:
    raise Canceled("Canceled by the user.")


def main_job(source: Path | None) -> int:
    """Read the job from ``source`` (stdin when None) and run it; other output goes to stderr."""
    text = source.read_text(encoding="utf-8") if source else sys.stdin.read()
    # The parent cancels with SIGTERM: raising here runs the finally blocks that remove temporary files.
    signal.signal(signal.SIGTERM, _terminated)
    out = sys.stdout
    sys.stdout = sys.stderr  # a stray print must not corrupt the JSON lines
    try:
        return run_job(json.loads(text), out)
    finally:
        sys.stdout = out
