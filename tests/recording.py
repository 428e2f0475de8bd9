"""A QgsProcessingFeedback that remembers what an algorithm told it, for tests to check."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps the progress values and log lines it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.percents: list[float] = []
        self.infos: list[str] = []
        self.progressChanged.connect(self.percents.append)

    def pushInfo(self, info: str) -> None:  # noqa: N802 - QGIS's name
        self.infos.append(info)
        super().pushInfo(info)
