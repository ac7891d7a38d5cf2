"""Compute embeddings: a raster layer -> a GeoTIFF of SoftCon embeddings (one band per dimension)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterBoolean,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.embed.spec import EmbedSpec
from ..core.settings import default
from .base import (
    SoftConAlgorithm,
    make_progress,
    name_output,
    output_name,
    raster_source,
    require_core,
    require_tif,
    run_core,
    tr,
)


class EmbedAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    MODE = "MODE"
    STRIDE = "STRIDE"
    EXTENT = "EXTENT"
    COG = "COG"
    OUTPUT = "OUTPUT"

    _group = "Embeddings"
    _help = (
        "Runs a SoftCon encoder over the raster window by window and writes its embeddings: a GeoTIFF "
        "with one band per embedding dimension, in the raster's CRS, which the other SoftCon algorithms "
        "(classification, similarity, PCA preview, k-means) accept instead of the imagery.\n\n"
        "Band order: 'auto' reads the band descriptions (B2, B04, ...); otherwise choose the product's "
        "order (Sentinel-2 L1C: 13 bands B1..B12 with B8A after B8; L2A: 12 bands without B10, which is "
        "then filled with zeros; EuroSAT: B8A last; Sentinel-1: VV, VH) or type one band name per raster "
        "band, e.g. B2,B3,B4,B8.\n"
        "Stride (Advanced): with 'pooled', the step between windows in pixels (default: half a window).\n"
        "Extent: optional; only that part of the raster is embedded.\n"
        "Cloud Optimized GeoTIFF: adds averaged overviews (faster display when zoomed out; one extra pass "
        "over the output).\n"
        "Checkpoint: a weights file for the chosen model (e.g. your own training) instead of its published "
        "weights. The model, bands and device used are written to the log."
    )

    def name(self) -> str:
        return "embed"

    def displayName(self) -> str:
        return tr("Compute embeddings")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Input raster")))
        self.add_band_parameters()
        self.add_model_parameters()
        self.add_mode_parameter()
        self.param(QgsProcessingParameterNumber(
            self.STRIDE, tr("Stride in pixels (0 = default)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0), advanced=True)
        self.param(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        self.add_device_parameter()
        self.param(QgsProcessingParameterBoolean(
            self.COG, tr("Write a Cloud Optimized GeoTIFF with overviews"), defaultValue=default(EmbedSpec, "cog")))
        self.param(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Embeddings")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.embed.engine import embed_raster

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer)
        spec = self.embed_spec(parameters, context, layer, cog=self.parameterAsBoolean(parameters, self.COG, context))
        out = require_tif(self.parameterAsOutputLayer(parameters, self.OUTPUT, context), "Embeddings")
        self.log_setup(feedback, spec.model, spec.checkpoint, spec.bands, spec.device)
        feedback.pushInfo(tr(f"Mode: {spec.mode}, stride: {spec.stride or 'default'}"))
        # core writes a temp file beside ``out`` and renames it when complete
        run_core(feedback, embed_raster, source, out, spec, progress=make_progress(feedback))
        name_output(context, out, output_name(layer, tr("embeddings")))
        return {self.OUTPUT: out}
