"""Run a child Python that reports as JSON lines, follow its records, and end it (and its children) on cancel.

Both the worker runtime (``python -m scl_deeplab.model_core job``) and the runtime set-up
(``python -m scl_deeplab.runtime.setup --json-lines``) speak this protocol on stdout, one object a line:

    {"type": "progress", "percent": 42.0}
    {"type": "info", "message": "..."}       {"type": "warn", "message": "..."}
    {"type": "result", "result": {...}}      {"type": "error", "kind": "InputError", "message": "..."}

Anything else on stdout, and all of stderr, is passed on as plain output lines. Nothing here needs qgis.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).parent.parent  # the plugin folder, not resolved: it may be a link
PACKAGE = PACKAGE_DIR.name  # "scl_deeplab"
STOP_GRACE_S = 5.0  # after SIGTERM the child removes its temporary files; then SIGKILL
TAIL_LINES = 20


@dataclass
class ChildExit:
    """How a child ended: its result or error record, its exit code and its last output lines."""

    code: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    canceled: bool = False
    tail: list[str] = field(default_factory=list)


def module_command(python: str, module: str, *args: str,
                   keep_pythonpath: bool = False) -> tuple[list[str], dict[str, str]]:
    """``python -m <plugin>.<module> args`` and its environment: the plugin folder's parent on PYTHONPATH.

    The child gets nothing of QGIS's PYTHONHOME nor, unless ``keep_pythonpath`` (a child of QGIS's own
    Python, which may find torch through it), its PYTHONPATH.
    """
    drop = {"PYTHONHOME"} if keep_pythonpath else {"PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_DIR.parent), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return [python, "-m", f"{PACKAGE}.{module}", *args], env


def parse_record(line: str) -> dict[str, Any] | None:
    """One JSON-lines record; None for any other line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


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


def _signal(proc: subprocess.Popen, pids: list[int], sig: int) -> None:
    """Send ``sig`` to the child's process group and to ``pids``; those already gone are skipped."""
    if sys.platform.startswith("win"):  # no process groups to signal: end the child itself
        proc.kill()
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End the child and all its descendants: SIGTERM, then SIGKILL to whatever lingers after ``grace_s``."""
    if proc.poll() is not None:
        return
    below = [] if sys.platform.startswith("win") else _descendants(proc.pid)
    _signal(proc, below, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal(proc, below, signal.SIGKILL)  # no-op for the ones that ended
    proc.wait()


def run_child(command: list[str], env: dict[str, str], *, stdin_text: str = "",
              on_record: Callable[[dict[str, Any]], None] = lambda record: None,
              on_output: Callable[[str], None] = lambda line: None,
              is_canceled: Callable[[], bool] = lambda: False, grace_s: float = STOP_GRACE_S) -> ChildExit:
    """Run ``command``, handing progress/info/warn records to ``on_record`` and other lines to ``on_output``.

    Once ``is_canceled()`` the child gets SIGTERM (its group and descendants), then SIGKILL after
    ``grace_s``; its last records are still read, so a child that cleans up can say so.
    Raises ``OSError`` when the command does not start.
    """
    options: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("win"):
        options = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", env=env, **options)
    lines: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, lines, tag), daemon=True).start()
    try:
        proc.stdin.write(stdin_text)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the child died at once; its stderr says why
    ended = ChildExit(code=0)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    open_streams, killed_at = 2, None
    try:
        while open_streams:
            if not ended.canceled and is_canceled():
                ended.canceled = True
                killed_at = time.monotonic() + grace_s
                threading.Thread(target=stop, args=(proc, grace_s), daemon=True).start()
            if killed_at is not None and time.monotonic() > killed_at + 2:
                break  # a grandchild outside the group still holds the pipes: stop listening
            try:
                tag, line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                open_streams -= 1
                continue
            record = parse_record(line) if tag == "out" else None
            if record is None:
                tail.append(line.rstrip())
                on_output(line.rstrip())
            elif record.get("type") == "result":
                ended.result = record.get("result")
            elif record.get("type") == "error":
                ended.error = record
            else:
                on_record(record)
    finally:
        stop(proc, grace_s)
        if not open_streams:  # both pumps are done; closing under a blocked reader could hang
            proc.stdout.close()
            proc.stderr.close()
    ended.code = proc.returncode
    ended.tail = list(tail)
    return ended
