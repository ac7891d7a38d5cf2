"""Apply saved classifier to many tiles: a folder of rasters or Sentinel-2 products, one map per tile, mosaics."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
)

from ..core.classify.styles import class_style
from ..core.settings import to_argv
from ..styles import StyleOnLoad, write_style
from .base import raster_source, run_worker, SoftConAlgorithm, tr


class ApplyTilesAlgorithm(SoftConAlgorithm):
    FOLDER = "FOLDER"
    LAYERS = "LAYERS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_CLASSES = "OUTPUT_CLASSES"

    _group = "Classification"
    _help = (
        "Maps many tiles with one classifier saved by 'Classify land cover': a folder of GeoTIFFs or VRTs, or of "
        "Sentinel-2 products (.SAFE folders or unzipped products with their band files), and/or raster layers. "
        "Each tile gets its own folder of outputs (class, probability and confidence rasters as Cloud Optimized "
        "GeoTIFFs, report, quicklook) inside the output folder, and classes.vrt, probabilities.vrt and "
        "confidence.vrt stitch them together; the class mosaic is loaded, styled.\n"
        "A tile is written completely or not at all. Running again with the same output folder, after a cancel "
        "or a crash, maps only the tiles that are missing (the log names the ones it skips)."
    )

    def name(self) -> str:
        return "applytiles"

    def displayName(self) -> str:
        return tr("Apply saved classifier to many tiles")

    def initAlgorithm(self, config=None) -> None:
        self.param(QgsProcessingParameterFile(
            self.FOLDER, tr("Folder of tiles (rasters or Sentinel-2 products)"),
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.param(QgsProcessingParameterMultipleLayers(
            self.LAYERS, tr("Raster layers (tiles)"), layerType=QgsProcessing.TypeRaster, optional=True))
        self.add_classifier_parameters()
        self.add_device_parameter()
        self.param(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, tr("Output folder")))
        self.output(QgsProcessingOutputRasterLayer(self.OUTPUT_CLASSES, tr("Class mosaic")))

    def processAlgorithm(self, parameters, context, feedback):
        inputs = [raster_source(layer, "Tile") for layer in
                  self.parameterAsLayerList(parameters, self.LAYERS, context) or []]
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if folder:
            inputs.insert(0, folder)
        if not inputs:
            raise QgsProcessingException(tr("Give a folder of tiles or at least one raster layer."))
        classifier = self.parameterAsFile(parameters, self.CLASSIFIER, context)
        if not classifier or not Path(classifier).is_file():
            raise QgsProcessingException(tr(f"Saved classifier not found: {classifier!r}. Save one with the "
                                            "'Trained classifier' output of 'Classify land cover'."))
        out_dir = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        spec = self.embed_spec(parameters, context, None)  # model, mode and stride: the classifier's
        feedback.pushInfo(tr(f"Classifier: {classifier}"))
        self.log_setup(feedback, spec, "as trained (from the classifier)")
        result = run_worker(feedback, "classify", ["apply", *inputs, "--tiles", "--classifier", classifier,
                                                   "--out-dir", out_dir] + to_argv(spec))
        mosaics = result.get("mosaics") or {}
        classes = mosaics.get("classes") or next((p for k, p in mosaics.items() if k.startswith("classes")), None)
        if classes is None:
            raise QgsProcessingException(tr("No tile was mapped; see the log."))
        qml = write_style(classes, class_style(result["class_names"], result["colors"]))
        context.addLayerToLoadOnCompletion(classes, QgsProcessingContext.LayerDetails(
            tr("classes (mosaic)"), context.project(), self.OUTPUT_CLASSES))
        StyleOnLoad.attach(context, classes, qml)
        return {self.OUTPUT_FOLDER: out_dir, self.OUTPUT_CLASSES: classes}
