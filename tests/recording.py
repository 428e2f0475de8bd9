"""Fakes that remember what they were told: ``RecordingProgress`` (model_core), ``RecordingFeedback`` (algorithms).

Both keep every progress value and every line, and can ask to stop, so a test
checks what the user would have seen and what happens on cancel.
"""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class RecordingProgress:
    """A model_core ``Progress`` that keeps percents and lines and asks to stop when told to.

    It asks to stop once any rule set here holds: ``canceled`` from the start, more than
    ``cancel_after_checks`` calls of ``is_canceled``, ``cancel_after_steps`` progress reports,
    or a line starting with ``cancel_on``.
    """

    def __init__(
        self,
        *,
        canceled: bool = False,
        cancel_after_checks: int | None = None,
        cancel_after_steps: int | None = None,
        cancel_on: str | None = None,
    ) -> None:
        self.percents: list[float] = []
        self.lines: list[str] = []  # info and warnings, in order
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.checks = 0
        self.canceled = canceled
        self._after_checks, self._after_steps, self._cancel_on = cancel_after_checks, cancel_after_steps, cancel_on

    def set_progress(self, percent: float) -> None:
        self.percents.append(percent)
        if self._after_steps is not None and len(self.percents) >= self._after_steps:
            self.canceled = True

    def is_canceled(self) -> bool:
        self.checks += 1
        if self._after_checks is not None and self.checks > self._after_checks:
            self.canceled = True
        return self.canceled

    def info(self, message: str) -> None:
        self.infos.append(message)
        self._line(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._line(message)

    def _line(self, message: str) -> None:
        self.lines.append(message)
        if self._cancel_on is not None and message.startswith(self._cancel_on):
            self.canceled = True


class RecordingFeedback(QgsProcessingFeedback):
    """A ``QgsProcessingFeedback`` that keeps progress values and the lines of every channel it offers.

    ``infos`` holds what went through ``pushInfo``; ``lines`` holds (channel, text) for
    every channel (info, warning, error, command, debug, console, progress text), so a
    test can check that nothing reached the user through any of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.percents: list[float] = []
        self.infos: list[str] = []
        self.lines: list[tuple[str, str]] = []
        self.progressChanged.connect(self.percents.append)

    @property
    def warnings(self) -> list[str]:
        """What went through ``pushWarning``."""
        return [text for channel, text in self.lines if channel == "warning"]

    @property
    def text(self) -> str:
        """Every line of every channel, one per line."""
        return "\n".join(text for _, text in self.lines)

    def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.infos.append(info)
        self.lines.append(("info", info))
        super().pushInfo(info)

    def pushWarning(self, warning: str) -> None:  # noqa: N802 - QGIS's name
        self.lines.append(("warning", warning))
        super().pushWarning(warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:  # noqa: N802, N803 - QGIS's names
        self.lines.append(("error", error))
        super().reportError(error, fatalError)

    def pushCommandInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.lines.append(("command", info))
        super().pushCommandInfo(info)

    def pushDebugInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.lines.append(("debug", info))
        super().pushDebugInfo(info)

    def pushConsoleInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.lines.append(("console", info))
        super().pushConsoleInfo(info)

    def setProgressText(self, text: str) -> None:  # noqa: N802 - QGIS's name
        self.lines.append(("progress text", text))
        super().setProgressText(text)
