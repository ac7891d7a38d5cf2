"""The outputs classification algorithms share: class, probability and confidence rasters and the report,
which core writes straight to the destinations the user chose; here they are only styled and named."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProcessingParameterFileDestination, QgsProcessingParameterRasterDestination

from ..core.classify.styles import class_style, CONFIDENCE, PROBABILITY
from ..styles import StyleOnLoad, write_style
from .base import output_name, require_tif, tr


@dataclass
class ClassificationOutputs:
    classes: str
    probability: str
    confidence: str
    report: str
    input_name: str = ""  # the raster's layer name, first in the output layers' names

    CLASSES = "OUTPUT_CLASSES"
    PROBABILITY = "OUTPUT_PROBABILITY"
    CONFIDENCE = "OUTPUT_CONFIDENCE"
    REPORT = "OUTPUT_REPORT"

    @classmethod
    def add_parameters(cls, alg) -> None:
        alg.param(QgsProcessingParameterRasterDestination(cls.CLASSES, tr("Class raster")))
        alg.param(QgsProcessingParameterRasterDestination(
            cls.PROBABILITY, tr("Class probabilities (one band per class)"), optional=True, createByDefault=True))
        alg.param(QgsProcessingParameterRasterDestination(
            cls.CONFIDENCE, tr("Confidence (highest class probability)"), optional=True, createByDefault=True))
        alg.param(QgsProcessingParameterFileDestination(
            cls.REPORT, tr("Accuracy report"), fileFilter="HTML files (*.html)", optional=True,
            createByDefault=True))

    @classmethod
    def from_parameters(cls, alg, parameters, context) -> "ClassificationOutputs":
        out = cls(
            classes=alg.parameterAsOutputLayer(parameters, cls.CLASSES, context),
            probability=alg.parameterAsOutputLayer(parameters, cls.PROBABILITY, context) or "",
            confidence=alg.parameterAsOutputLayer(parameters, cls.CONFIDENCE, context) or "",
            report=alg.parameterAsFileOutput(parameters, cls.REPORT, context) or "",
            input_name=output_name(alg.parameterAsRasterLayer(parameters, "INPUT", context), ""),
        )
        require_tif(out.classes, tr("Class raster"))
        for path, what in ((out.probability, "Class probabilities"), (out.confidence, "Confidence")):
            if path:
                require_tif(path, tr(what))
        return out

    def name(self, what: str) -> str:
        """An output layer's name: the input raster's name, then what the layer holds."""
        return f"{self.input_name}{what}"

    @property
    def folder(self) -> Path:
        """Where core stages the outputs (beside the class raster, so that they are renamed into place)."""
        return Path(self.classes).parent

    def destinations(self) -> dict[str, str]:
        """The outputs core keeps (its output keys) and where; the quicklook goes beside the report."""
        report = Path(self.report) if self.report else None
        dests = {"class_raster": self.classes, "probability_raster": self.probability,
                 "confidence_raster": self.confidence, "report_html": self.report,
                 "quicklook_png": str(report.with_name(report.stem + "_quicklook.png")) if report else ""}
        return {key: path for key, path in dests.items() if path}

    def publish(self, result, context, feedback) -> dict:
        """Style the files core wrote (``result``, a ``ClassifyResult``) and name them for loading."""
        results = {}
        qml = write_style(self.classes, class_style(result.class_names, result.colors))
        StyleOnLoad.attach(context, self.classes, qml, self.name(tr("classes")))
        results[self.CLASSES] = self.classes
        if self.probability:
            qml = write_style(self.probability, PROBABILITY)
            StyleOnLoad.attach(context, self.probability, qml, self.name(tr("class probabilities")))
            results[self.PROBABILITY] = self.probability
        if self.confidence:
            qml = write_style(self.confidence, CONFIDENCE)
            StyleOnLoad.attach(context, self.confidence, qml, self.name(tr("confidence")))
            results[self.CONFIDENCE] = self.confidence
        if result.report_html is not None:
            results[self.REPORT] = str(result.report_html)
        feedback.pushInfo(tr(f"Classes: {', '.join(result.class_names)}"))
        feedback.pushInfo(tr(f"Next: the map's accuracy and class areas by the book. Run SoftCon > Accuracy "
                             f"assessment > Create validation sample on '{self.name(tr('classes'))}', label its "
                             "points, then Assess accuracy and estimate areas."))
        return results
