"""Embedding preview: the first three principal components of an embedding raster as RGB."""
from __future__ import annotations

from qgis.core import QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer

from ..core.classify.styles import PCA_RGB
from ..styles import StyleOnLoad, write_style
from .base import (
    SoftConAlgorithm,
    embedding_source,
    make_progress,
    output_name,
    require_core,
    require_tif,
    run_core,
    tr,
)


class PcaPreviewAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"

    _group = "Embeddings"
    _help = (
        "A false-colour picture of an embedding raster: its first three principal components as red, "
        "green and blue (2-98 % stretch). Areas the model sees as alike get alike colours, so it is a "
        "quick check that the embeddings separate the landscape before you classify. The input is an "
        "embedding raster from 'Compute embeddings'."
    )

    def name(self) -> str:
        return "pcapreview"

    def displayName(self) -> str:
        return tr("Embedding preview (PCA false colour)")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Embedding raster")))
        self.param(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("PCA preview")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.classify.explore import pca_preview

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = embedding_source(layer)
        out = require_tif(self.parameterAsOutputLayer(parameters, self.OUTPUT, context), "PCA preview")
        run_core(feedback, pca_preview, source, out, progress=make_progress(feedback))
        qml = write_style(out, PCA_RGB)
        StyleOnLoad.attach(context, out, qml, output_name(layer, tr("embedding preview")))
        return {self.OUTPUT: out}
