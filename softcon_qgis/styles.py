"""Styles of the output layers: QGIS renderers built from core's style data (``core.classify.styles``).

Core describes how each output looks (class values, names and colours; colour ramps; RGB stretches) and writes
its ``.qml`` from that; here the same data becomes QGIS's own renderers, so a layer looks the same whether it was
made by the command line or by the plugin. Each output gets its renderer twice: saved as ``<output>.qml`` beside
the file (QGIS applies it whenever the file is opened later, by any means), and applied by a layer
post-processor when Processing loads the output on completion (Processing loads outputs without their default
style).
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRasterRenderer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from .core.classify.styles import ClassStyle, RampStyle, RgbStyle, Style


def _color(rgb) -> QColor:
    return QColor(*[int(c) for c in rgb[:3]])


def class_renderer(layer: QgsRasterLayer, style: ClassStyle, band: int = 1) -> QgsPalettedRasterRenderer:
    """Paletted renderer: each value in its colour, labelled with its class name."""
    classes = [QgsPalettedRasterRenderer.Class(int(v), _color(rgb), str(name)) for v, name, rgb in style.entries]
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, classes)


def ramp_renderer(layer: QgsRasterLayer, style: RampStyle) -> QgsSingleBandPseudoColorRenderer:
    """Continuous colour ramp: the style's stops, interpolated from its vmin to its vmax."""
    shader_fn = QgsColorRampShader(style.vmin, style.vmax)
    shader_fn.setColorRampType(QgsColorRampShader.Interpolated)
    shader_fn.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, _color(c), f"{v:.3g}")
                                    for v, c in style.items()])
    shader = QgsRasterShader(style.vmin, style.vmax)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), style.band, shader)
    renderer.setClassificationMin(style.vmin)
    renderer.setClassificationMax(style.vmax)
    return renderer


def rgb_renderer(layer: QgsRasterLayer, style: RgbStyle) -> QgsMultiBandColorRenderer:
    """Three bands as red, green, blue, each stretched from the style's vmin to its vmax."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), *style.bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter in zip(style.bands, setters):
        ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        ce.setMinimumValue(style.vmin)
        ce.setMaximumValue(style.vmax)
        setter(ce)
    return renderer


def renderer(layer: QgsRasterLayer, style: Style) -> QgsRasterRenderer:
    """The QGIS renderer of a core style (by its ``kind``: the plugin's copy of core and the repository's are
    different modules to Python, with different classes)."""
    make = {"paletted": class_renderer, "ramp": ramp_renderer, "rgb": rgb_renderer}[style.kind]
    return make(layer, style)


def write_style(path: str, style: Style) -> str:
    """Open the raster at ``path``, give it the renderer of ``style``, save that as ``<path stem>.qml``."""
    layer = QgsRasterLayer(str(path), Path(path).stem, "gdal")
    if not layer.isValid():
        raise ValueError(f"QGIS cannot open the output raster {path}")
    layer.setRenderer(renderer(layer, style))
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
