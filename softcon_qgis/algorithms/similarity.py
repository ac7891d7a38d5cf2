"""Similarity map: where else does the landscape look like these reference features?"""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.classify.spec import GRIDS
from ..core.classify.styles import SIMILARITY
from ..styles import StyleOnLoad, write_style
from .base import (
    SoftConAlgorithm,
    make_progress,
    output_name,
    raster_source,
    require_core,
    require_tif,
    run_core,
    tr,
)


class SimilarityAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    MODE = "MODE"
    GRID = "GRID"
    EXTENT = "EXTENT"
    OUTPUT = "OUTPUT"

    _group = "Embeddings"
    _help = (
        "Cosine similarity of every pixel's SoftCon embedding to the mean embedding of the reference "
        "points or polygons (values -1..1; 1 = looks the same to the model). Use it to find more of "
        "something you have marked once: a crop, a roof type, a wetland.\n"
        "Tick 'Selected features only' to use just the selected references. The raster may be imagery "
        "(embedded with the chosen model first) or an embedding raster from 'Compute embeddings'. "
        "The output is styled with a colour ramp from 0 to 1. It is on the raster's own grid (10 m "
        "for Sentinel-2; the embeddings' similarity upsampled bilinearly) unless Output grid is 'embedding'."
    )

    def name(self) -> str:
        return "similarity"

    def displayName(self) -> str:
        return tr("Similarity map")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Raster (imagery or embeddings)")))
        self.param(QgsProcessingParameterFeatureSource(
            self.REFERENCE, tr("Reference points or polygons"),
            [QgsProcessing.TypeVectorPoint, QgsProcessing.TypeVectorPolygon]))
        self.add_band_parameters()
        self.add_model_parameters()
        self.add_mode_parameter()
        self.param(QgsProcessingParameterEnum(
            self.GRID, tr("Output grid"), options=list(GRIDS), defaultValue=GRIDS[0], usesStaticStrings=True))
        self.add_device_parameter()
        self.param(QgsProcessingParameterExtent(self.EXTENT, tr("Extent"), optional=True))
        self.param(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Similarity")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.classify.explore import similarity_map

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = raster_source(layer)
        reference, ref_layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, self.REFERENCE, context, ["gpkg", "shp", "geojson"], "gpkg", feedback)
        if not reference:
            raise QgsProcessingException(tr("Reference layer: no valid vector layer was given."))
        spec = self.embed_spec(parameters, context, layer)
        out = require_tif(self.parameterAsOutputLayer(parameters, self.OUTPUT, context), "Similarity")
        self.log_setup(feedback, spec.model, spec.checkpoint, spec.bands, spec.device)
        run_core(feedback, similarity_map, source, reference, out, spec, layer=ref_layer or None,
                 grid=self.parameterAsEnumString(parameters, self.GRID, context) or GRIDS[0],
                 progress=make_progress(feedback))
        qml = write_style(out, SIMILARITY)
        StyleOnLoad.attach(context, out, qml, output_name(layer, tr("similarity")))
        return {self.OUTPUT: out}
