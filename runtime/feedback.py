"""``QgsProcessingFeedback`` seen as model_core's ``Progress``, and a worker's JSON-lines records shown on it."""

from __future__ import annotations

from typing import Any


class FeedbackProgress:
    """Adapts ``QgsProcessingFeedback`` to model_core's ``Progress`` protocol."""

    def __init__(self, feedback: Any | None) -> None:
        if feedback is None:
            from qgis.core import QgsProcessingFeedback

            feedback = QgsProcessingFeedback()
        self.feedback = feedback

    def set_progress(self, percent: float) -> None:
        self.feedback.setProgress(percent)

    def is_canceled(self) -> bool:
        return self.feedback.isCanceled()

    def info(self, message: str) -> None:
        self.feedback.pushInfo(message)

    def warn(self, message: str) -> None:
        self.feedback.pushWarning(message)


def show_record(progress: Any, record: dict[str, Any]) -> None:
    """A child's progress, info or warn record passed on to ``progress`` (anything with Progress's methods)."""
    kind = record.get("type")
    if kind == "progress":
        progress.set_progress(float(record["percent"]))
    elif kind == "info":
        progress.info(str(record["message"]))
    elif kind == "warn":
        progress.warn(str(record["message"]))
