"""The styled class layer drawn over the RGB scene by QGIS's own map renderer, as a user sees it.

Set ``SOFTCON_DOCS_PICTURE=docs/classification.png`` to keep the picture (the README shows it); it is then
made on a larger 8 x 8 km crop holding training points of six classes.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from qgis.core import QgsContrastEnhancement, QgsMultiBandColorRenderer, QgsRasterLayer, QgsRasterMinMaxOrigin
from qgis.PyQt.QtGui import QImage

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis
DOCS_PICTURE = os.environ.get("SOFTCON_DOCS_PICTURE")
DOCS_BOUNDS = (438230.0, 4160990.0, 446230.0, 4168990.0)


@pytest.fixture(scope="module")
def classes_tif(qgis_processing, tmp_path_factory):
    crop = helpers.scene_crop(DOCS_BOUNDS) if DOCS_PICTURE else helpers.scene_crop()
    out = tmp_path_factory.mktemp("render")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache"))  # shares the embedding with the other tests
        plugin = helpers.load_provider()
        ok, res, fb = helpers.run("softcon:classify", {
            "INPUT": str(crop), "TRAINING": str(helpers.demo_points()), "CLASS_FIELD": "class", "MODE": "dense",
            "DEVICE": "cpu", "OUTPUT_CLASSES": str(out / "classes.tif"),
            "OUTPUT_PROBABILITY": None, "OUTPUT_CONFIDENCE": None, "OUTPUT_REPORT": None})
        plugin.unload()
    assert ok, fb.errors
    return res["OUTPUT_CLASSES"], crop


def test_class_map_over_rgb_scene(classes_tif, tmp_path):
    path, crop = classes_tif
    classes = QgsRasterLayer(path, "classes", "gdal")  # picks up the .qml the plugin wrote beside it
    rgb = QgsRasterLayer(str(crop), "Sentinel-2 RGB", "gdal")
    assert classes.isValid() and rgb.isValid()
    rgb.setRenderer(QgsMultiBandColorRenderer(rgb.dataProvider(), 4, 3, 2))  # B4, B3, B2
    rgb.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    palette = {c.label: (c.color.red(), c.color.green(), c.color.blue()) for c in classes.renderer().classes()}
    assert len(palette) >= 3

    opaque = helpers.to_array(helpers.render([classes, rgb], rgb.extent(), rgb.crs()))
    flat = opaque.reshape(-1, 3)
    shares = {name: float(np.mean(np.all(flat == np.array(col), axis=1))) for name, col in palette.items()}
    assert sum(s > 0.01 for s in shares.values()) >= 2, shares  # more than one class colour on the map
    assert opaque.std() > 10  # not blank

    classes.renderer().setOpacity(0.6)
    image = helpers.render([classes, rgb], rgb.extent(), rgb.crs())
    out = Path(DOCS_PICTURE or tmp_path / "classification.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    assert image.save(str(out), "PNG")
    picture = helpers.to_array(QImage(str(out)))
    assert picture.shape == (480, 480, 3)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 50  # the scene shows through the classes
    assert not np.array_equal(picture, opaque)
    del classes, rgb
