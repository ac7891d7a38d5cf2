"""The outputs classification algorithms share: class, probability and confidence rasters and the report,
which the worker writes straight to the destinations the user chose (``--output KEY=PATH``); here they are
only styled and named."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsProcessingParameterFileDestination, QgsProcessingParameterRasterDestination

from ..core.classify.styles import class_style, CONFIDENCE
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

    def name(self, what: str, method: str) -> str:
        """An output layer's name: the input raster's name, what the layer holds, the method and the time, so
        repeated runs are told apart in the Layers panel ("scene - classes (rf, 14:32)")."""
        return f"{self.input_name}{what} ({method}, {time.strftime('%H:%M')})"

    @property
    def folder(self) -> Path:
        """Where core stages the outputs (beside the class raster, so that they are renamed into place)."""
        return Path(self.classes).parent

    def args(self) -> list[str]:
        """``--out-dir`` and one ``--output KEY=PATH`` per output the user chose (core's output keys); the
        quicklook goes beside the report."""
        report = Path(self.report) if self.report else None
        dests = {"class_raster": self.classes, "probability_raster": self.probability,
                 "confidence_raster": self.confidence, "report_html": self.report,
                 "quicklook_png": str(report.with_name(report.stem + "_quicklook.png")) if report else ""}
        args = ["--out-dir", str(self.folder)]
        for key, path in dests.items():
            if path:
                args += ["--output", f"{key}={path}"]
        return args

    def publish(self, result: dict, context, feedback) -> dict:
        """Style the files the worker wrote (``result``: ``ClassifyResult.summary()``) and name them for loading.
        The probabilities (one band per class) are written but not loaded: one band of them says little, and
        the confidence layer shows how sure the map is; the log says which band is which class."""
        results = {}
        names, method = result["class_names"], result.get("method") or ""
        qml = write_style(self.classes, class_style(names, result["colors"]))
        classes = self.name(tr("classes"), method)
        StyleOnLoad.attach(context, self.classes, qml, classes)
        results[self.CLASSES] = self.classes
        if self.probability:
            if context.willLoadLayerOnCompletion(self.probability):
                context.setLayersToLoadOnCompletion({k: v for k, v in context.layersToLoadOnCompletion().items()
                                                     if k != self.probability})
            bands = ", ".join(f"{i} = {n}" for i, n in enumerate(names, start=1))
            feedback.pushInfo(tr(f"Class probabilities (not added to the map; one band per class: {bands}): "
                                 f"{self.probability}"))
            results[self.PROBABILITY] = self.probability
        if self.confidence:
            qml = write_style(self.confidence, CONFIDENCE)
            StyleOnLoad.attach(context, self.confidence, qml, self.name(tr("confidence"), method))
            results[self.CONFIDENCE] = self.confidence
        if result.get("report_html"):
            results[self.REPORT] = result["report_html"]
        for warning in result.get("warnings", []):
            feedback.reportError(tr(f"Warning: {warning}"), fatalError=False)
        feedback.pushInfo(tr(f"Classes: {', '.join(names)}"))
        feedback.pushInfo(tr(f"Next: the map's accuracy and class areas by the book. Run SoftCon > Accuracy "
                             f"assessment > Create validation sample on '{classes}', label its "
                             "points, then Assess accuracy and estimate areas."))
        return results
