"""A small progress and cancel interface that model_core reports through.

The Processing algorithms adapt ``QgsProcessingFeedback`` to it; the command
line prints; tests use ``SILENT`` or a recorder.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from .errors import Canceled


@runtime_checkable
class Progress(Protocol):
    """What long-running model_core functions report to."""

    def set_progress(self, percent: float) -> None:
        """Overall progress, 0-100."""

    def is_canceled(self) -> bool:
        """True once the user asked to stop."""

    def info(self, message: str) -> None:
        """A line for the user's log."""

    def warn(self, message: str) -> None:
        """A warning the user should see."""


class _Silent:
    def set_progress(self, percent: float) -> None:
        pass

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        logging.getLogger("scl_deeplab").debug(message)

    def warn(self, message: str) -> None:
        logging.getLogger("scl_deeplab").warning(message)


SILENT: Progress = _Silent()


class PrintProgress:
    """Progress for the command line: log lines on stderr, percent every 10 %."""

    def __init__(self) -> None:
        self._last = -10.0

    def set_progress(self, percent: float) -> None:
        if percent >= self._last + 10 or percent >= 100:
            self._last = percent
            logging.getLogger("scl_deeplab").info("%.0f%%", percent)

    def is_canceled(self) -> bool:
        return False

    def info(self, message: str) -> None:
        logging.getLogger("scl_deeplab").info(message)

    def warn(self, message: str) -> None:
        logging.getLogger("scl_deeplab").warning(message)


class SubProgress:
    """Maps 0-100 of a sub-task onto the range [start, end] of a parent's progress."""

    def __init__(self, parent: Progress, start: float, end: float) -> None:
        self._parent, self._start, self._end = parent, start, end

    def set_progress(self, percent: float) -> None:
        self._parent.set_progress(self._start + (self._end - self._start) * percent / 100.0)

    def is_canceled(self) -> bool:
        return self._parent.is_canceled()

    def info(self, message: str) -> None:
        self._parent.info(message)

    def warn(self, message: str) -> None:
        self._parent.warn(message)


def check_canceled(progress: Progress) -> None:
    """Raise ``Canceled`` if the user asked to stop."""
    if progress.is_canceled():
        raise Canceled("Canceled by the user.")
