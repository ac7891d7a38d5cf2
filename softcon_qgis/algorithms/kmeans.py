"""Cluster embeddings (k-means): an unsupervised class map from an embedding raster."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.classify.styles import cluster_style
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


class KMeansAlgorithm(SoftConAlgorithm):
    INPUT = "INPUT"
    CLUSTERS = "CLUSTERS"
    SEED = "SEED"
    OUTPUT = "OUTPUT"

    _group = "Embeddings"
    _help = (
        "Groups the pixels of an embedding raster into k clusters (k-means on L2-normalised embeddings, "
        "fitted on a random sample of pixels and applied to all). The result is a class raster with "
        "values 1..k, styled with one colour per cluster: a first map without any training data, and a "
        "guide to where training samples are needed. Same seed, same clusters."
    )

    def name(self) -> str:
        return "kmeans"

    def displayName(self) -> str:
        return tr("Cluster embeddings (k-means)")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterRasterLayer(self.INPUT, tr("Embedding raster")))
        self.param(QgsProcessingParameterNumber(
            self.CLUSTERS, tr("Number of clusters"), QgsProcessingParameterNumber.Integer, defaultValue=8,
            minValue=2, maxValue=254))
        self.param(QgsProcessingParameterNumber(
            self.SEED, tr("Random seed"), QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0))
        self.param(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Clusters")))

    def processAlgorithm(self, parameters, context, feedback):
        require_core()
        from ..core.classify.explore import kmeans_map

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        source = embedding_source(layer)
        k = self.parameterAsInt(parameters, self.CLUSTERS, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        out = require_tif(self.parameterAsOutputLayer(parameters, self.OUTPUT, context), "Clusters")
        feedback.pushInfo(tr(f"k-means with {k} clusters, seed {seed}"))
        run_core(feedback, kmeans_map, source, k, out, seed=seed, progress=make_progress(feedback))
        qml = write_style(out, cluster_style(k))
        StyleOnLoad.attach(context, out, qml, output_name(layer, tr("clusters")))
        return {self.OUTPUT: out}
