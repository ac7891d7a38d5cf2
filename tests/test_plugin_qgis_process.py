"""The plugin straight from the repository folder, run by ``qgis_process.bin`` in a fresh process."""
from __future__ import annotations

import pytest
import rasterio

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def qgis_profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("qgis-repo")
    profile, plugins = root / "profile", helpers.repo_plugin_path(root)
    helpers.enable_plugin(profile)
    return profile, plugins, root


def test_plugin_loads_and_describes_its_algorithms(qgis_profile):
    profile, plugins, _ = qgis_profile
    proc = helpers.qgis_process("help", "softcon:classify", profile_root=profile, plugin_path=plugins)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TRAINING" in proc.stdout and "CLASS_FIELD" in proc.stdout and "spatially blocked" in proc.stdout


def test_model_info_runs_with_rasterio_on_its_own_gdal(qgis_profile):
    profile, plugins, root = qgis_profile
    out = root / "models.html"
    res = helpers.run_algorithm("softcon:modelinfo", {"ACTION": "list", "OUTPUT": out}, profile, plugins,
                          env={"SOFTCON_CACHE": str(root / "cache")})["results"]
    assert "galileo_nano_s2" in res["MODELS"].split(",")
    assert res["AVAILABLE"] is True  # the default model's weights ship with the plugin
    assert res["WEIGHTS"] == str(helpers.ROOT / "core" / "weights" / "galileo_nano_s2.safetensors")  # via the symlink
    assert out.is_file() and "B13_vitb14_softcon" in out.read_text()
    # Inside QGIS the rasterio wheel must use the GDAL it was built with, not QGIS's (see deps.py).
    assert f"(GDAL {rasterio.__gdal_version__})" in res["ENVIRONMENT"], res["ENVIRONMENT"]


def test_bad_input_fails_with_the_message_and_no_output(qgis_profile, tmp_path):
    profile, plugins, root = qgis_profile
    params = {"INPUT": helpers.scene_crop(), "TRAINING": helpers.demo_points(), "CLASS_FIELD": "class",
              "BAND_LIST": "B2,B3,B4", "DEVICE": "cpu",
              "OUTPUT_CLASSES": tmp_path / "classes.tif", "OUTPUT_REPORT": tmp_path / "report.html"}
    proc = helpers.run_algorithm_failing("softcon:classify", params, profile, plugins,
                                   env={"SOFTCON_CACHE": str(root / "cache")})
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "The band list names 3 bands but the raster has 13" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
