"""Classify land cover from training points or polygons over SoftCon embeddings.

Its Method list, the method parameters (k, temperature...) and their help come from the classifier registry
(``core.classify.methods``), its other choices and defaults from ``FitSpec``: a method registered in core
appears here without an edit.
"""
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

from ..core.classify import methods
from ..core.classify.spec import feature_choices, FitSpec, GRIDS
from ..core.settings import default, to_argv
from .base import gui_words, raster_source, run_core, run_worker, SoftConAlgorithm, tr
from .outputs import ClassificationOutputs

_HELP = (
    "Maps land cover from a few labelled points or polygons. The raster is turned into SoftCon "
    "embeddings (or give an embedding raster made by 'Compute embeddings'), every training feature "
    "becomes training pixels, and a classifier over the embeddings maps the whole raster.\n\n"
    "Methods: 'auto' (the default: every method on every feature set, the best on the validation layer "
    "when given, else by spatially blocked cross-validation, the whole comparison in the log and the "
    "report), {methods}.\n"
    "Validation points or polygons (optional): independent reference samples with the same class field, "
    "never used for training; the report then headlines their accuracy, kappa, per-class F1 and "
    "confusion matrix.\n"
    "Features: 'emb' (the embeddings and their neighbourhood, upsampled to the raster's pixels following "
    "the pixel's own bands, so field and shore edges stay sharp), 'pixel' (the pixel's bands and "
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


class ClassifyAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    TRAINING = "TRAINING"
    CLASS_FIELD = "CLASS_FIELD"
    VALIDATION = "VALIDATION"
    METHOD = "METHOD"
    FEATURES = "FEATURES"
    GRID = "GRID"
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

    @property
    def _help(self) -> str:  # the registry's methods as they are now
        return _HELP.format(methods=", ".join(f"'{m.name}' ({gui_words(m.help)})" for m in methods.METHODS.values()))

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
        self.param(QgsProcessingParameterFeatureSource(
            self.VALIDATION, tr("Validation points or polygons (independent, same class field; optional)"),
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon], optional=True))
        self.param(QgsProcessingParameterEnum(
            self.METHOD, tr("Method"), options=list(methods.method_choices()), defaultValue=default(FitSpec, "method"),
            usesStaticStrings=True))
        self.param(QgsProcessingParameterEnum(
            self.FEATURES, tr("Features"), options=list(feature_choices()), defaultValue=default(FitSpec, "features"),
            usesStaticStrings=True))
        self.param(QgsProcessingParameterEnum(
            self.GRID, tr("Output grid"), options=list(GRIDS), defaultValue=default(FitSpec, "grid"),
            usesStaticStrings=True))
        for p in methods.parameters().values():  # k, temperature, ...: one number each, named as on the command line
            kind = QgsProcessingParameterNumber.Integer if p.type is int else QgsProcessingParameterNumber.Double
            low = {} if p.low is None else {"minValue": p.low}
            self.param(QgsProcessingParameterNumber(p.name.upper(), tr(p.title), kind, defaultValue=p.default, **low),
                       advanced=p.advanced)
        self.add_band_parameters()
        self.add_model_parameters()
        self.add_mode_parameter()
        self.add_device_parameter()
        self.param(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        advanced = [
            QgsProcessingParameterNumber(
                self.STRIDE, tr("Stride in pixels (0 = default)"), QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(
                self.CV_FOLDS, tr("Cross-validation folds (0 = none)"), QgsProcessingParameterNumber.Integer,
                defaultValue=default(FitSpec, "cv_folds"), minValue=0, maxValue=20),
            QgsProcessingParameterNumber(
                self.MAX_PIXELS, tr("Most training pixels per polygon"), QgsProcessingParameterNumber.Integer,
                defaultValue=default(FitSpec, "max_pixels_per_polygon"), minValue=1),
        ]
        for p in advanced:
            self.param(p, advanced=True)
        ClassificationOutputs.add_parameters(self)
        self.param(QgsProcessingParameterFileDestination(
            self.OUTPUT_CLASSIFIER, tr("Trained classifier"), fileFilter="SoftCon classifier (*.npz)",
            optional=True, createByDefault=False))
        self.output(QgsProcessingOutputNumber(self.ACCURACY, tr("Overall accuracy (validation samples, else "
                                                                "cross-validated)")))
        self.output(QgsProcessingOutputString(self.CLASS_NAMES, tr("Class names")))

    def fit_spec(self, parameters, context) -> FitSpec:
        """The classifier settings of this run as one ``FitSpec`` (a value it refuses: one message)."""
        params = {}
        for p in methods.parameters().values():
            read = self.parameterAsInt if p.type is int else self.parameterAsDouble
            params[p.name] = read(parameters, p.name.upper(), context)
        return run_core(None, FitSpec,
                        method=self.parameterAsEnumString(parameters, self.METHOD, context) or default(FitSpec,
                                                                                                       "method"),
                        features=self.parameterAsEnumString(parameters, self.FEATURES, context)
                        or default(FitSpec, "features"),
                        grid=self.parameterAsEnumString(parameters, self.GRID, context) or default(FitSpec, "grid"),
                        cv_folds=self.parameterAsInt(parameters, self.CV_FOLDS, context),
                        max_pixels_per_polygon=self.parameterAsInt(parameters, self.MAX_PIXELS, context),
                        params=params)

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
        validation, validation_layer = None, None
        if parameters.get(self.VALIDATION):
            validation, validation_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
                parameters, self.VALIDATION, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        spec = self.embed_spec(parameters, context, layer)
        fit = self.fit_spec(parameters, context)
        outputs = ClassificationOutputs.from_parameters(self, parameters, context)
        classifier_out = self.parameterAsFileOutput(parameters, self.OUTPUT_CLASSIFIER, context) or None
        self.log_setup(feedback, spec)
        feedback.pushInfo(tr(f"Training: {samples} ({sample_layer or 'first layer'}), field {field}, "
                             f"method {fit.method}"))
        args = [source, "--samples", samples, "--label-field", field]
        args += ["--layer", sample_layer] if sample_layer else []
        args += ["--validation", validation] if validation else []
        args += ["--validation-layer", validation_layer] if validation and validation_layer else []
        args += (["--save-classifier", classifier_out] if classifier_out else []) + to_argv(fit) + to_argv(spec)
        result = run_worker(feedback, "classify", args + outputs.args())
        results = outputs.publish(result, context, feedback)
        how = f"({result['method']} on features {result['features']})"
        if result.get("validation_accuracy") is not None:
            feedback.pushInfo(tr(f"Validation samples: overall accuracy {100 * result['validation_accuracy']:.1f}% "
                                 f"on {result['n_validated']} pixels {how}"))
        if result.get("overall_accuracy") is not None:  # the comparison table itself is in the log already (core)
            feedback.pushInfo(tr(f"Spatially blocked cross-validation: overall accuracy "
                                 f"{100 * result['overall_accuracy']:.1f}% {how}"))
        results[self.ACCURACY] = (result["validation_accuracy"] if result.get("validation_accuracy") is not None
                                  else result.get("overall_accuracy"))
        results[self.CLASS_NAMES] = ",".join(result["class_names"])
        if classifier_out:
            results[self.OUTPUT_CLASSIFIER] = result["classifier"]
        return results
