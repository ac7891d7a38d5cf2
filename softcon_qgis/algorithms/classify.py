"""Classify land cover from training points or polygons over SoftCon embeddings."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import MODES, SoftConAlgorithm, raster_source, run_worker, tr
from .outputs import ClassificationOutputs


class ClassifyAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    TRAINING = "TRAINING"
    CLASS_FIELD = "CLASS_FIELD"
    METHOD = "METHOD"
    FEATURES = "FEATURES"
    GRID = "GRID"
    K = "K"
    TEMPERATURE = "TEMPERATURE"
    MODE = "MODE"
    STRIDE = "STRIDE"
    EXTENT = "EXTENT"
    CV_FOLDS = "CV_FOLDS"
    MAX_PIXELS = "MAX_PIXELS"
    OUTPUT_CLASSES = ClassificationOutputs.CLASSES
    OUTPUT_PROBABILITY = ClassificationOutputs.PROBABILITY
    OUTPUT_CONFIDENCE = ClassificationOutputs.CONFIDENCE
    OUTPUT_REPORT = ClassificationOutputs.REPORT
    OUTPUT_CLASSIFIER = "OUTPUT_CLASSIFIER"
    ACCURACY = "ACCURACY"
    CLASS_NAMES = "CLASS_NAMES"

    _group = "Classification"
    _help = (
        "Maps land cover from a few labelled points or polygons. The raster is turned into SoftCon "
        "embeddings (or give an embedding raster made by 'Compute embeddings'), every training feature "
        "becomes training pixels, and a classifier over the embeddings maps the whole raster.\n\n"
        "Methods: 'auto' (the default: every method on every feature set, the best by spatially blocked "
        "cross-validation, the whole comparison in the log and the report), 'knn' (cosine k nearest "
        "neighbours, votes weighted by exp(similarity / temperature)), 'linear' (logistic regression), "
        "'prototype' (nearest class mean), 'rf' (random forest), 'hgb' (histogram gradient boosting).\n"
        "Features: 'emb' (the embeddings, upsampled to the raster's pixels), 'pixel' (the pixel's bands and "
        "NDVI, NDWI, MNDWI, NDBI; with 'rf' the per-pixel random forest other tools offer), 'emb+pixel', or "
        "'auto'. The map is on the raster's own grid (10 m for Sentinel-2) unless Grid is 'embedding'.\n"
        "Outputs: the class raster (styled with the class names and colours), one probability band per "
        "class, the confidence (highest class probability), and an HTML report with the accuracy, "
        "confusion matrix and per-class scores from spatially blocked cross-validation (training pixels "
        "close together never end up on both sides of a split), and the comparison of every method and "
        "feature set.\n"
        "Save the trained classifier to apply it to other rasters with 'Apply saved classifier'.\n\n"
        "Each class needs at least 2 training features (10 or more give a reliable map and report); the "
        "training layer must overlap the raster. Nothing is written when the run fails or is cancelled."
    )

    def name(self) -> str:
        return "classify"

    def displayName(self) -> str:
        return tr("Classify land cover")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster (imagery or embeddings)")))
        self.param(QgsProcessingParameterFeatureSource(
            self.TRAINING, tr("Training points or polygons"),
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon]))
        self.param(QgsProcessingParameterField(
            self.CLASS_FIELD, tr("Class field"), parentLayerParameterName=self.TRAINING,
            type=QgsProcessingParameterField.Any))
        self.param(QgsProcessingParameterEnum(
            self.METHOD, tr("Method"), options=["auto", "knn", "linear", "prototype", "rf", "hgb"],
            defaultValue="auto", usesStaticStrings=True))
        self.param(QgsProcessingParameterEnum(
            self.FEATURES, tr("Features"), options=["auto", "emb+pixel", "emb", "pixel"], defaultValue="auto",
            usesStaticStrings=True))
        self.param(QgsProcessingParameterEnum(
            self.GRID, tr("Output grid"), options=["pixel", "embedding"], defaultValue="pixel",
            usesStaticStrings=True))
        self.param(QgsProcessingParameterNumber(
            self.K, tr("k (kNN neighbours)"), QgsProcessingParameterNumber.Integer, defaultValue=20, minValue=1))
        self.add_band_parameters()
        self.add_model_parameters()
        self.param(QgsProcessingParameterEnum(
            self.MODE, tr("Embedding mode"), options=list(MODES), defaultValue="dense", usesStaticStrings=True))
        self.add_device_parameter()
        self.param(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        advanced = [
            QgsProcessingParameterNumber(
                self.TEMPERATURE, tr("Temperature (kNN and prototype)"), QgsProcessingParameterNumber.Double,
                defaultValue=0.07, minValue=1e-4),
            QgsProcessingParameterNumber(
                self.STRIDE, tr("Stride in pixels (0 = default)"), QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(
                self.CV_FOLDS, tr("Cross-validation folds (0 = none)"), QgsProcessingParameterNumber.Integer,
                defaultValue=5, minValue=0, maxValue=20),
            QgsProcessingParameterNumber(
                self.MAX_PIXELS, tr("Most training pixels per polygon"), QgsProcessingParameterNumber.Integer,
                defaultValue=200, minValue=1),
        ]
        for p in advanced:
            self.param(p, advanced=True)
        ClassificationOutputs.add_parameters(self)
        self.param(QgsProcessingParameterFileDestination(
            self.OUTPUT_CLASSIFIER, tr("Trained classifier"), fileFilter="SoftCon classifier (*.npz)",
            optional=True, createByDefault=False))
        self.output(QgsProcessingOutputNumber(self.ACCURACY, tr("Cross-validated overall accuracy")))
        self.output(QgsProcessingOutputString(self.CLASS_NAMES, tr("Class names")))

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer)
        samples, sample_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.TRAINING, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        if not samples:
            raise QgsProcessingException(tr("Training layer: no valid vector layer was given."))
        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        if not field:
            raise QgsProcessingException(tr("Choose the field of the training layer that holds the class."))
        method = self.parameterAsEnumString(parameters, self.METHOD, context) or "auto"
        outputs = ClassificationOutputs.from_parameters(self, parameters, context)
        classifier_out = self.parameterAsFileOutput(parameters, self.OUTPUT_CLASSIFIER, context) or None
        args = [source, "--samples", samples, "--label-field", field, "--method", method,
                "--features", self.parameterAsEnumString(parameters, self.FEATURES, context) or "auto",
                "--grid", self.parameterAsEnumString(parameters, self.GRID, context) or "pixel",
                "--k", str(self.parameterAsInt(parameters, self.K, context)),
                "--temperature", repr(self.parameterAsDouble(parameters, self.TEMPERATURE, context)),
                "--cv-folds", str(self.parameterAsInt(parameters, self.CV_FOLDS, context)),
                "--max-pixels-per-polygon", str(self.parameterAsInt(parameters, self.MAX_PIXELS, context))]
        args += ["--layer", sample_layer] if sample_layer else []
        args += ["--save-classifier", classifier_out] if classifier_out else []
        args += self.embed_args(parameters, context, layer, feedback) + outputs.args()
        feedback.pushInfo(tr(f"Training: {samples} ({sample_layer or 'first layer'}), field {field}, "
                             f"method {method}"))
        result = run_worker(feedback, "classify", args)
        results = outputs.publish(result, context, feedback)
        if result.get("overall_accuracy") is not None:  # the comparison table itself is in the log already (core)
            feedback.pushInfo(tr(f"Spatially blocked cross-validation: overall accuracy "
                                 f"{100 * result['overall_accuracy']:.1f}% ({result['method']} on "
                                 f"features {result['features']})"))
        results[self.ACCURACY] = result.get("overall_accuracy")
        results[self.CLASS_NAMES] = ",".join(result["class_names"])
        if classifier_out:
            results[self.OUTPUT_CLASSIFIER] = result["classifier"]
        return results
