"""The "SoftCon" Processing provider: one algorithm class per file in ``algorithms/``."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

from .algorithms import ALGORITHMS


class SoftConProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "softcon"

    def name(self) -> str:
        return "SoftCon"

    def longName(self) -> str:
        return "SoftCon Earth-observation foundation models"

    def loadAlgorithms(self) -> None:
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
