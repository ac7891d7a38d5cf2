"""One style authority: the ``.qml`` core writes and the renderers the plugin builds come from the same data
(``core.classify.styles``) and draw the same picture in QGIS."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from qgis.core import QgsRasterLayer

import qgis_helpers as helpers
from core.classify.styles import (CONFIDENCE, class_style, cluster_style, PCA_RGB, PROBABILITY, qml, RampStyle,
                                  SIMILARITY, write_qml)
from softcon_qgis.styles import renderer

pytestmark = pytest.mark.qgis


def _raster(path, data: np.ndarray) -> str:
    """A small GeoTIFF (EPSG:32618, 10 m) of ``data`` (bands, rows, cols)."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                       dtype=data.dtype, crs="EPSG:32618", transform=Affine(10, 0, 440000, 0, -10, 4170000)) as dst:
        dst.write(data)
    return str(path)


def _drawn(layer: QgsRasterLayer) -> np.ndarray:
    return helpers.to_array(helpers.render([layer], layer.extent(), layer.crs(), size=(64, 64)))


GRADIENT = np.linspace(-0.2, 1.2, 64 * 64, dtype=np.float32).reshape(1, 64, 64)  # beyond both ends of the ramps
CLASSES = np.repeat(np.arange(1, 9, dtype=np.uint8), 8 * 64).reshape(1, 64, 64)
RGB = np.stack([np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)), np.full((64, 64), 128, np.uint8),
                np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1)).T])


@pytest.mark.parametrize("name, style, data", [
    ("confidence", CONFIDENCE, GRADIENT),
    ("probability", PROBABILITY, GRADIENT),
    ("similarity", SIMILARITY, GRADIENT),
    ("classes", class_style(["open sea", "forest", "cropland"], [(8, 48, 140), (20, 100, 30), (235, 200, 90)]),
     CLASSES),
    ("clusters", cluster_style(8), CLASSES),
    ("pca", PCA_RGB, RGB),
])
def test_core_qml_and_plugin_renderer_draw_the_same(qgis_app, tmp_path, name, style, data):
    path = _raster(tmp_path / f"{name}.tif", data)
    from_core = QgsRasterLayer(path, "core", "gdal")
    write_qml(tmp_path / f"{name}.qml", style)  # what the command line leaves beside its outputs
    assert from_core.loadNamedStyle(str(tmp_path / f"{name}.qml"))[1]
    from_plugin = QgsRasterLayer(path, "plugin", "gdal")
    from_plugin.setRenderer(renderer(from_plugin, style))
    assert from_core.renderer().type() == from_plugin.renderer().type()
    a, b = _drawn(from_core), _drawn(from_plugin)
    assert a.std() > 10  # a picture, not a blank
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name


def test_plugin_renderers_hold_the_style_data(qgis_app, tmp_path):
    ramp = RampStyle(0.0, 2.0, ((0.0, (0, 0, 0)), (0.5, (255, 0, 0)), (1.0, (255, 255, 255))))
    layer = QgsRasterLayer(_raster(tmp_path / "g.tif", GRADIENT), "g", "gdal")
    layer.setRenderer(renderer(layer, ramp))  # the layer owns it (a bare renderer's shader dies with it)
    items = layer.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert [(i.value, i.color.getRgb()[:3]) for i in items] == [(0.0, (0, 0, 0)), (1.0, (255, 0, 0)),
                                                                 (2.0, (255, 255, 255))]
    style = class_style(["a", "b"], [(1, 2, 3), (4, 5, 6)])
    layer = QgsRasterLayer(_raster(tmp_path / "c.tif", CLASSES), "c", "gdal")
    layer.setRenderer(renderer(layer, style))
    got = [(c.value, c.label, c.color.getRgb()[:3]) for c in layer.renderer().classes()]
    assert got == [(1, "a", (1, 2, 3)), (2, "b", (4, 5, 6))] and 'label="b"' in qml(style)
