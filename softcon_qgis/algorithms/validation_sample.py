"""Create validation sample: a stratified random sample of a class map, ready to label in QGIS."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..styles import StyleOnLoad
from .base import SoftConAlgorithm, make_parent, make_progress, output_name, raster_source, require_core, run_core, tr


class ValidationSampleAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    SIZE = "SIZE"
    MIN_PER_CLASS = "MIN_PER_CLASS"
    EXPECTED_UA = "EXPECTED_UA"
    TARGET_SE = "TARGET_SE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    POINTS = "POINTS"

    _group = "Accuracy assessment"
    _help = (
        "Draws a stratified random sample of a class map (the class raster of 'Classify land cover', or any "
        "integer class raster): the strata are the map's classes, one point per pixel centre, drawn at random "
        "(the same seed gives the same points). Every class gets at least the minimum number of points (a rare "
        "class would otherwise get a handful), the rest go in proportion to area.\n"
        "Sample size 0 (the default) computes it from the standard error of overall accuracy you aim at and the "
        "user's accuracy you expect of each class (Olofsson et al. 2014, eq. 13).\n"
        "The output layer opens ready for labelling: look at each point on the imagery and pick its true class "
        "in the 'reference' field from the list of class names (the map's own class is hidden from the form, "
        "so that labelling is blind to it); unlabelled points are drawn as hollow circles. Save the edits, then "
        "run 'Assess accuracy and estimate areas'."
    )

    def name(self) -> str:
        return "validationsample"

    def displayName(self) -> str:
        return tr("Create validation sample")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Class raster (the map to assess)")))
        self.param(QgsProcessingParameterNumber(
            self.SIZE, tr("Sample size (0 = from the target standard error)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0))
        self.param(QgsProcessingParameterNumber(
            self.MIN_PER_CLASS, tr("Fewest points per class"), QgsProcessingParameterNumber.Integer,
            defaultValue=20, minValue=2))
        self.param(QgsProcessingParameterNumber(
            self.EXPECTED_UA, tr("Expected user's accuracy of the classes"), QgsProcessingParameterNumber.Double,
            defaultValue=0.85, minValue=0.01, maxValue=0.99), advanced=True)
        self.param(QgsProcessingParameterNumber(
            self.TARGET_SE, tr("Target standard error of overall accuracy"), QgsProcessingParameterNumber.Double,
            defaultValue=0.015, minValue=0.001, maxValue=0.2), advanced=True)
        self.param(QgsProcessingParameterNumber(
            self.SEED, tr("Random seed"), QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0))
        self.param(QgsProcessingParameterVectorDestination(
            self.OUTPUT, tr("Validation sample"), defaultValue=None))
        self.output(QgsProcessingOutputNumber(self.POINTS, tr("Number of points")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.assess.sampling import create_sample

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer, "Class raster")
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if Path(out).suffix.lower() != ".gpkg":
            raise QgsProcessingException(tr(f"Validation sample: the sample is a GeoPackage; use a .gpkg file name, "
                                            f"not {out}."))
        make_parent(out)
        size = self.parameterAsInt(parameters, self.SIZE, context) or None
        result = run_core(
            feedback, create_sample, source, out, size=size,
            min_per_class=self.parameterAsInt(parameters, self.MIN_PER_CLASS, context),
            expected_ua=self.parameterAsDouble(parameters, self.EXPECTED_UA, context),
            target_se=self.parameterAsDouble(parameters, self.TARGET_SE, context),
            seed=self.parameterAsInt(parameters, self.SEED, context), progress=make_progress(feedback))
        StyleOnLoad.attach(context, out, None, output_name(layer, tr("validation sample")))  # its layer_styles
        feedback.pushInfo(tr(f"{result.size} points. Label the 'reference' field of each, save the edits, then run "
                             "'Assess accuracy and estimate areas' with this map and this layer."))
        return {self.OUTPUT: out, self.POINTS: result.size}
