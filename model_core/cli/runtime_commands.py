"""The command line's runtime subcommands: ``environment`` (what this Python can run) and ``job`` (the worker)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_environment(subparsers: Any) -> None:
    """The ``environment`` subcommand: versions, GPUs and the device and precision that "auto" picks, as JSON."""
    p = subparsers.add_parser(
        "environment",
        help="report Python, package versions, GPUs and the device and precision used",
        description="Report this Python's versions of torch, torchvision, rasterio and numpy, CUDA and MPS, "
        "the CPU and whether it has native bfloat16, and the device and precision DEVICE auto picks. "
        "Works without torch (then it says what is missing).",
    )
    p.set_defaults(func=run_environment)


def run_environment(args: argparse.Namespace) -> int:
    """Run ``environment``: the report as JSON on stdout, as lines on stderr."""
    import logging

    from .environment import report_lines, runtime_report
    from .output import emit

    report = runtime_report()
    for line in report_lines(report):
        logging.getLogger("scl_deeplab").info(line)
    emit(report)
    return 0


def add_job(subparsers: Any) -> None:
    """The ``job`` subcommand: one JSON job in, JSON lines out (used by the plugin's worker runtime)."""
    p = subparsers.add_parser(
        "job",
        help="run a JSON job and report JSON lines (the plugin's worker runtime)",
        description="Read a job ({\"task\": ..., \"args\": {...}}) from FILE or stdin and run it, writing "
        "progress, info, warn and then one result or error as JSON lines on stdout.",
    )
    p.add_argument("file", nargs="?", type=Path, help="the job as JSON (default: read stdin)")
    p.set_defaults(func=run_job_command)


def run_job_command(args: argparse.Namespace) -> int:
    """Run ``job`` from parsed arguments."""
    from .job import main_job

    return main_job(args.file)
