"""The "SoftCon" Processing provider: one algorithm class per file in ``algorithms/``."""
from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS

ICON = Path(__file__).resolve().parent / "icon.svg"  # also metadata.txt's icon (Plugin Manager)


class SoftConProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "softcon"

    def name(self) -> str:
        return "SoftCon"

    def longName(self) -> str:
        return "SoftCon Earth-observation foundation models"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def svgIconPath(self) -> str:
        return str(ICON)

    def loadAlgorithms(self) -> None:
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
