"""Apply saved classifier: map another raster with a classifier trained by 'Classify land cover'."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterExtent,
    QgsProcessingParameterRasterLayer,
)

from ..core.settings import to_argv
from .base import SoftConAlgorithm, raster_source, run_worker, tr
from .outputs import ClassificationOutputs


class ApplyClassifierAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    EXTENT = "EXTENT"
    OUTPUT_CLASSES = ClassificationOutputs.CLASSES
    OUTPUT_PROBABILITY = ClassificationOutputs.PROBABILITY
    OUTPUT_CONFIDENCE = ClassificationOutputs.CONFIDENCE
    OUTPUT_REPORT = ClassificationOutputs.REPORT

    _group = "Classification"
    _help = (
        "Maps a raster with a classifier saved by 'Classify land cover' (its 'Trained classifier' output, "
        "a .npz file). The raster is embedded with the model, mode and stride the classifier was trained "
        "on, so use imagery of the same sensor and band set (set the band order if the band descriptions "
        "do not name the bands). Give the same checkpoint file if the classifier was trained with one.\n"
        "Outputs are styled like those of 'Classify land cover'; the report lists the classes and area "
        "shares (no accuracy: there are no training samples here)."
    )

    def name(self) -> str:
        return "applyclassifier"

    def displayName(self) -> str:
        return tr("Apply saved classifier")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster (imagery or embeddings)")))
        self.add_classifier_parameters()
        self.add_device_parameter()
        self.param(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        ClassificationOutputs.add_parameters(self)

    def processAlgorithm(self, parameters, context, feedback):
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer)
        classifier = self.parameterAsFile(parameters, self.CLASSIFIER, context)
        if not classifier or not Path(classifier).is_file():
            raise QgsProcessingException(tr(f"Saved classifier not found: {classifier!r}. Save one with the "
                                            "'Trained classifier' output of 'Classify land cover'."))
        spec = self.embed_spec(parameters, context, layer)  # model, mode and stride: the classifier's
        outputs = ClassificationOutputs.from_parameters(self, parameters, context)
        feedback.pushInfo(tr(f"Classifier: {classifier}"))
        self.log_setup(feedback, spec, "as trained (from the classifier)")
        result = run_worker(feedback, "classify", ["apply", source, "--classifier", classifier] + to_argv(spec)
                            + outputs.args())
        return outputs.publish(result, context, feedback)
