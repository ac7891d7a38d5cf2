"""Assess accuracy and estimate areas: design-based estimates from a labelled validation sample."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import SoftConAlgorithm, make_parent, make_progress, raster_source, require_core, run_core, tr


class AssessAccuracyAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    SAMPLE = "SAMPLE"
    REFERENCE_FIELD = "REFERENCE_FIELD"
    STRATUM_FIELD = "STRATUM_FIELD"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_JSON = "OUTPUT_JSON"
    OUTPUT_CSV = "OUTPUT_CSV"
    OVERALL_ACCURACY = "OVERALL_ACCURACY"

    _group = "Accuracy assessment"
    _help = (
        "Estimates the accuracy of a class map and the area of each class from a labelled validation sample "
        "(made by 'Create validation sample', or any point layer whose reference field holds class names or "
        "codes of the map): the error matrix in proportions of area, overall, user's and producer's accuracy and "
        "each class's area in hectares, each with its 95 % confidence interval (Olofsson et al. 2014, strata = "
        "the map's classes; Stehman 2014 when the sample's strata differ from them, e.g. a sample drawn on an "
        "earlier version of the map; a sample without a stratum field is treated as one simple random sample).\n"
        "Unlabelled points are skipped and counted, points outside the map or on nodata are left out and "
        "reported; every class (stratum) needs at least 2 labelled points. Outputs, in the output folder: "
        "accuracy.html (the tables to quote), accuracy.json (every figure) and error_matrix.csv."
    )

    def name(self) -> str:
        return "assessaccuracy"

    def displayName(self) -> str:
        return tr("Assess accuracy and estimate areas")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Class raster (the map that was sampled)")))
        self.param(QgsProcessingParameterFeatureSource(
            self.SAMPLE, tr("Labelled validation sample"), [QgsProcessing.TypeVectorPoint]))
        self.param(QgsProcessingParameterField(
            self.REFERENCE_FIELD, tr("Reference class field (empty: 'reference')"), defaultValue="reference",
            parentLayerParameterName=self.SAMPLE, type=QgsProcessingParameterField.Any, optional=True))
        self.param(QgsProcessingParameterField(
            self.STRATUM_FIELD, tr("Stratum field (empty: the sample is not stratified)"), defaultValue="stratum",
            parentLayerParameterName=self.SAMPLE, type=QgsProcessingParameterField.Any, optional=True), advanced=True)
        self.param(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, tr("Output folder")))
        self.output(QgsProcessingOutputHtml(self.OUTPUT_HTML, tr("Accuracy and area report")))
        self.output(QgsProcessingOutputFile(self.OUTPUT_JSON, tr("Every figure (JSON)")))
        self.output(QgsProcessingOutputFile(self.OUTPUT_CSV, tr("Error matrix (CSV)")))
        self.output(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, tr("Overall accuracy")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.assess.accuracy import assess_accuracy
        from ..core.assess.report import format_text

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer, "Class raster")
        vector = self.parameterAsVectorLayer(parameters, self.SAMPLE, context)
        if vector is not None and vector.isModified():
            raise QgsProcessingException(tr(f"The sample layer '{vector.name()}' has unsaved edits; save them "
                                            "(Layer > Save Layer Edits) and run again."))
        sample, sample_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.SAMPLE, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        if not sample:
            raise QgsProcessingException(tr("Labelled validation sample: no valid point layer was given."))
        reference = self.parameterAsString(parameters, self.REFERENCE_FIELD, context) or "reference"
        stratum = self.parameterAsString(parameters, self.STRATUM_FIELD, context) or None
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        make_parent(Path(folder) / "accuracy.json")
        result = run_core(feedback, assess_accuracy, source, sample, folder, reference_field=reference,
                          stratum_field=stratum, layer=sample_layer or None, progress=make_progress(feedback))
        feedback.pushCommandInfo(format_text(result.report).replace(" ", "\u00a0"))  # the log is HTML
        return {self.OUTPUT_FOLDER: folder, self.OUTPUT_HTML: str(result.html), self.OUTPUT_JSON: str(result.json),
                self.OUTPUT_CSV: str(result.csv),
                self.OVERALL_ACCURACY: result.report["overall_accuracy"]["estimate"]}
