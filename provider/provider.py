"""The Processing provider: id ``scldeeplab``, one line per algorithm."""

from __future__ import annotations

import configparser
from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..algorithms.download_l2a import DownloadL2A
from ..algorithms.download_weights import DownloadWeights
from ..algorithms.environment import Environment
from ..algorithms.evaluate import Evaluate
from ..algorithms.export_onnx import ExportOnnx
from ..algorithms.finetune_layer4 import FinetuneLayer4
from ..algorithms.make_patches import MakePatches
from ..algorithms.predict import Predict
from ..algorithms.prepare_l2a import PrepareL2A
from ..algorithms.sample_scene import SampleScene
from ..algorithms.train_head import TrainHead

ROOT = Path(__file__).resolve().parent.parent


class SclDeepLabProvider(QgsProcessingProvider):
    """Lists SCL DeepLab's algorithms in the toolbox and in qgis_process."""

    def id(self) -> str:
        return "scldeeplab"

    def name(self) -> str:
        return "SCL DeepLab"

    def longName(self) -> str:  # noqa: N802 - QGIS's name
        return f"SCL DeepLab {self.versionInfo()}"

    def icon(self) -> QIcon:
        return QIcon(str(ROOT / "resources" / "icon.svg"))

    def versionInfo(self) -> str:  # noqa: N802 - QGIS's name
        meta = configparser.ConfigParser()
        meta.read(ROOT / "metadata.txt", encoding="utf-8")
        return meta.get("general", "version", fallback="")

    def load(self) -> bool:
        """Adds the runtime settings to Processing > Options > Providers, then the algorithms."""
        from .settings import add_settings

        add_settings(self)
        return super().load()

    def unload(self) -> None:
        from .settings import remove_settings

        remove_settings()
        super().unload()

    def loadAlgorithms(self) -> None:  # noqa: N802 - QGIS's name
        self.addAlgorithm(SampleScene())
        self.addAlgorithm(PrepareL2A())
        self.addAlgorithm(DownloadL2A())
        self.addAlgorithm(MakePatches())
        self.addAlgorithm(TrainHead())
        self.addAlgorithm(FinetuneLayer4())
        self.addAlgorithm(Predict())
        self.addAlgorithm(ExportOnnx())
        self.addAlgorithm(Evaluate())
        self.addAlgorithm(Environment())
        self.addAlgorithm(DownloadWeights())
