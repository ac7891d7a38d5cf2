"""Styles of the output layers, built with QGIS's own raster renderers.

Each output gets its renderer twice: saved as ``<output>.qml`` beside the file (QGIS applies it whenever
the file is opened later, by any means), and applied by a layer post-processor when Processing loads the
output on completion (Processing loads outputs without their default style).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

RAMP = "Viridis"  # perceptually uniform, readable by colour-blind users, present in every QGIS profile


def class_renderer(layer: QgsRasterLayer, names: Sequence[str], colors: Sequence[Sequence[int]],
                   values: Sequence[int] | None = None, band: int = 1) -> QgsPalettedRasterRenderer:
    """Paletted renderer: value ``values[i]`` (default ``i + 1``) in ``colors[i]``, labelled ``names[i]``."""
    values = list(values) if values is not None else list(range(1, len(names) + 1))
    classes = [QgsPalettedRasterRenderer.Class(int(v), QColor(*[int(c) for c in rgb[:3]]), str(name))
               for v, name, rgb in zip(values, names, colors)]
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, classes)


def _band_range(layer: QgsRasterLayer, band: int) -> tuple[float, float]:
    stats = layer.dataProvider().bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    lo, hi = float(stats.minimumValue), float(stats.maximumValue)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def ramp_renderer(layer: QgsRasterLayer, vmin: float | None = None, vmax: float | None = None,
                  band: int = 1, ramp: str = RAMP) -> QgsSingleBandPseudoColorRenderer:
    """Continuous colour ramp over [vmin, vmax] (default: the band's range)."""
    if vmin is None or vmax is None:
        vmin, vmax = _band_range(layer, band)
    shader_fn = QgsColorRampShader(vmin, vmax, QgsStyle.defaultStyle().colorRamp(ramp),
                                   QgsColorRampShader.Interpolated)
    shader_fn.classifyColorRamp(5, band, layer.extent(), layer.dataProvider())
    shader = QgsRasterShader(vmin, vmax)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(vmin)
    renderer.setClassificationMax(vmax)
    return renderer


def grey_renderer(layer: QgsRasterLayer, vmin: float = 0.0, vmax: float = 1.0,
                  band: int = 1) -> QgsSingleBandGrayRenderer:
    """Grey stretch from ``vmin`` (black) to ``vmax`` (white)."""
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), band)
    ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
    ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    ce.setMinimumValue(vmin)
    ce.setMaximumValue(vmax)
    renderer.setContrastEnhancement(ce)
    return renderer


def rgb_renderer(layer: QgsRasterLayer, bands: tuple[int, int, int] = (1, 2, 3)) -> QgsMultiBandColorRenderer:
    """Three bands as red, green, blue, each stretched over its own range."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter in zip(bands, setters):
        lo, hi = _band_range(layer, band)
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        ce.setMinimumValue(lo)
        ce.setMaximumValue(hi)
        setter(ce)
    return renderer


def write_style(path: str, make_renderer, **kwargs) -> str:
    """Open the raster at ``path``, set ``make_renderer(layer, **kwargs)``, save it as ``<path stem>.qml``."""
    layer = QgsRasterLayer(str(path), Path(path).stem, "gdal")
    if not layer.isValid():
        raise ValueError(f"QGIS cannot open the output raster {path}")
    layer.setRenderer(make_renderer(layer, **kwargs))
    qml = str(Path(path).with_suffix(".qml"))
    message, ok = layer.saveNamedStyle(qml)
    if not ok:
        raise OSError(f"Could not write the style {qml}: {message}")
    del layer
    return qml


class StyleOnLoad(QgsProcessingLayerPostProcessorInterface):
    """Applies a saved ``.qml`` to an output raster when Processing loads it into the project; with ``qml=None``,
    the layer's own default style (a GeoPackage's ``layer_styles`` table): Processing loads outputs without it."""

    _alive: dict[str, "StyleOnLoad"] = {}  # Processing keeps only a C++ pointer: hold the Python object

    def __init__(self, qml: str | None) -> None:
        super().__init__()
        self.qml = qml

    def postProcessLayer(self, layer, context, feedback) -> None:
        if self.qml is None:
            message, ok = layer.loadDefaultStyle()
        elif isinstance(layer, QgsRasterLayer):
            message, ok = layer.loadNamedStyle(self.qml)
        else:
            return
        if not ok and feedback is not None:
            feedback.reportError(f"Could not apply the style {self.qml or 'of ' + layer.source()}: {message}",
                                 fatalError=False)
        layer.triggerRepaint()

    @classmethod
    def attach(cls, context, output_path: str, qml: str | None, name: str | None = None) -> None:
        """Style (and name) the output ``output_path`` when it is loaded on completion."""
        if not context.willLoadLayerOnCompletion(output_path):
            return
        details = context.layerToLoadOnCompletionDetails(output_path)
        if name:
            details.name = name
        processor = cls(qml)
        cls._alive[output_path] = processor
        details.setPostProcessor(processor)
