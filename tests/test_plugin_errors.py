"""Bad input in the dialog gives one clear message in the log and leaves no half-written layer:
wrong band mapping, a training layer that misses the raster, a field with one class, a cancelled run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsVectorLayer

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def data():
    return {"crop": helpers.scene_crop(), "points": helpers.demo_points()}


@pytest.fixture(scope="module", autouse=True)
def plugin(qgis_processing, data):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache-errors"))
        plugin = helpers.load_provider()
        yield plugin
        helpers.drop_layers()
        plugin.unload()


def classify_params(data, out: Path, **over) -> dict:
    params = {
        "INPUT": str(data["crop"]), "TRAINING": str(data["points"]), "CLASS_FIELD": "class", "METHOD": "knn",
        "MODE": "dense", "DEVICE": "cpu",
        "OUTPUT_CLASSES": str(out / "classes.tif"), "OUTPUT_PROBABILITY": str(out / "probabilities.tif"),
        "OUTPUT_CONFIDENCE": str(out / "confidence.tif"), "OUTPUT_REPORT": str(out / "report.html"),
    }
    params.update(over)
    return params


def assert_failed_cleanly(ok: bool, fb: helpers.RecordingFeedback, out: Path, *words: str) -> str:
    """The run failed, said why (every word in ``words`` appears), and left the output folder empty."""
    assert not ok
    message = "\n".join(fb.errors)
    for word in words:
        assert word.lower() in message.lower(), message
    assert "Traceback" not in message
    assert sorted(p.name for p in out.iterdir()) == [], "outputs (or a staging folder) were left behind"
    return message


def test_wrong_band_mapping(data, tmp_path):
    ok, _, fb = helpers.run("softcon:classify", classify_params(data, tmp_path, BAND_LIST="B2,B3,B4"))
    assert_failed_cleanly(ok, fb, tmp_path, "3 bands", "13")


def test_training_layer_without_overlap(data, tmp_path):
    far = json.loads(Path(data["points"]).read_text())
    for f in far["features"]:  # 1.5 degrees west: same labels, over land 130 km away
        f["geometry"]["coordinates"][0] -= 1.5
    (tmp_path.parent / "far").mkdir(exist_ok=True)
    path = tmp_path.parent / "far" / "far_points.geojson"
    path.write_text(json.dumps(far))
    ok, _, fb = helpers.run("softcon:classify", classify_params(data, tmp_path, TRAINING=str(path)))
    message = assert_failed_cleanly(ok, fb, tmp_path)
    assert "raster" in message.lower() and any(w in message.lower() for w in ("outside", "overlap", "none of"))


def test_field_with_one_class(data, tmp_path):
    layer = QgsVectorLayer("Point?crs=EPSG:32618&field=kind:string", "one class", "memory")
    feats = []
    for i in range(6):
        f = QgsFeature(layer.fields())
        x, y = helpers.CROP_BOUNDS[0] + 500 + 400 * i, helpers.CROP_BOUNDS[1] + 2000
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f["kind"] = "water"
        feats.append(f)
    assert layer.dataProvider().addFeatures(feats)[0]
    assert QgsProject.instance().addMapLayer(layer)
    ok, _, fb = helpers.run("softcon:classify",
                            classify_params(data, tmp_path, TRAINING=layer.id(), CLASS_FIELD="kind"))
    QgsProject.instance().removeMapLayer(layer.id())
    del layer
    message = assert_failed_cleanly(ok, fb, tmp_path, "at least two classes")
    assert "Only one class ('water')" in message, message


def test_cancelled_run_leaves_nothing(data, tmp_path):
    fb = helpers.RecordingFeedback()
    fb.progressChanged.connect(lambda pct: fb.cancel() if pct > 0 else None)  # the user presses Cancel
    ok, _, fb = helpers.run("softcon:embed", {"INPUT": str(data["crop"]), "MODE": "dense", "DEVICE": "cpu",
                                        "OUTPUT": str(tmp_path / "emb.tif")},
                      feedback=fb)
    assert_failed_cleanly(ok, fb, tmp_path, "cancel")


def test_wrong_output_extension(data, tmp_path):
    ok, _, fb = helpers.run("softcon:embed", {"INPUT": str(data["crop"]), "DEVICE": "cpu",
                                        "OUTPUT": str(tmp_path / "emb.png")})
    assert_failed_cleanly(ok, fb, tmp_path, ".tif")
