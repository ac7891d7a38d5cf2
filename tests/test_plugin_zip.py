"""The installable plugin zip: its contents, and the plugin installed from it into a fresh QGIS profile,
where ``qgis_process.bin`` runs it and classifies exactly as the in-process plugin does."""
from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    """``scripts/build_plugin_zip.py`` (what ``make plugin-zip`` runs), into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    script = helpers.ROOT / "scripts" / "build_plugin_zip.py"
    proc = subprocess.run([sys.executable, str(script), "--out-dir", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1
    return zips[0]


def metadata_version() -> str:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(helpers.ROOT / "metadata.txt")
    return cp["general"]["version"]


def test_zip_contents(plugin_zip):
    assert plugin_zip.name == f"softcon_qgis-{metadata_version()}.zip"
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
        assert zf.read("softcon_qgis/metadata.txt") == (helpers.ROOT / "metadata.txt").read_bytes()
        infos = {i.filename: i for i in zf.infolist()}
    assert all(n.startswith("softcon_qgis/") for n in names)
    for needed in ("__init__.py", "plugin.py", "provider.py", "deps.py", "styles.py", "algorithms/base.py",
                   "algorithms/classify.py", "core/__init__.py", "core/classify/fit.py", "core/embed/engine.py"):
        assert f"softcon_qgis/{needed}" in names, needed
    # core is bundled whole (every module the plugin may import), as real files
    for module in (helpers.ROOT / "core").rglob("*.py"):
        assert f"softcon_qgis/core/{module.relative_to(helpers.ROOT / 'core').as_posix()}" in names, module
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]
    weights = [n for n in names if n.endswith((".safetensors", ".pth", ".pt", ".ckpt", ".npz"))]
    # not the tiny reference model; the position bias too, else dense maps from the zip differ from the CLI's
    assert weights == ["softcon_qgis/core/weights/galileo_nano_s2.position_bias.safetensors",
                       "softcon_qgis/core/weights/galileo_nano_s2.safetensors"]
    assert all(infos[w].file_size <= 10 * 2**20 for w in weights)
    # the default model's weights ship with their MIT licence beside them
    assert {"softcon_qgis/core/weights/galileo_nano_s2.safetensors", "softcon_qgis/core/weights/LICENSE-galileo_nano",
            "softcon_qgis/core/weights/MODEL_CARD.md"} <= set(names)
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read_string(zipfile.ZipFile(plugin_zip).read("softcon_qgis/metadata.txt").decode())
    meta = cp["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "license"):
        assert meta.get(key, "").strip(), key
    assert meta["qgisMinimumVersion"] == "3.22" and meta["hasProcessingProvider"] == "yes"


def test_zip_is_reproducible(plugin_zip, tmp_path):
    subprocess.run([sys.executable, str(helpers.ROOT / "scripts" / "build_plugin_zip.py"), "--out-dir", str(tmp_path)],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / plugin_zip.name).read_bytes() == plugin_zip.read_bytes()


@pytest.fixture(scope="module")
def installed(plugin_zip, tmp_path_factory):
    """The zip unpacked into a fresh profile, as 'Install from ZIP' does, and enabled there."""
    root = tmp_path_factory.mktemp("qgis-zip")
    profile = root / "profile"
    folder = helpers.install_zip(plugin_zip, profile)
    assert (folder / "metadata.txt").is_file() and (folder / "core" / "embed" / "engine.py").is_file()
    assert not (folder / "core").is_symlink()
    helpers.enable_plugin(profile)
    return profile, root


def test_installed_zip_runs_model_info(installed):
    profile, root = installed
    out = helpers.run_algorithm("softcon:modelinfo", {"ACTION": "list"}, profile, None,
                          env={"SOFTCON_CACHE": str(root / "cache")})
    assert "galileo_nano_s2" in out["results"]["MODELS"]
    # offline, the default model runs on the weights inside the installed plugin
    assert out["results"]["AVAILABLE"] is True
    plugin = helpers.profile_plugins_dir(profile) / "softcon_qgis"
    assert Path(out["results"]["WEIGHTS"]) == plugin / "core" / "weights" / "galileo_nano_s2.safetensors"


def test_installed_zip_classifies_like_the_in_process_plugin(installed, qgis_processing, tmp_path):
    """The same classification in qgis_process (plugin from the zip, its own fresh embedding cache)
    and in this process (plugin from the repository) gives the same class raster."""
    profile, root = installed
    crop, points = helpers.scene_crop(), helpers.demo_points()
    params = {"INPUT": crop, "TRAINING": points, "CLASS_FIELD": "class", "METHOD": "knn", "MODE": "dense",
              "DEVICE": "cpu", "OUTPUT_PROBABILITY": "skip", "OUTPUT_CONFIDENCE": "skip"}
    cli = dict(params, OUTPUT_CLASSES=tmp_path / "cli" / "classes.tif", OUTPUT_REPORT=tmp_path / "cli" / "report.html")
    for k in ("OUTPUT_PROBABILITY", "OUTPUT_CONFIDENCE"):
        cli.pop(k)
    res = helpers.run_algorithm("softcon:classify", cli, profile, None, timeout=400,
                          env={"SOFTCON_CACHE": str(root / "cache-zip")})["results"]
    assert Path(res["OUTPUT_CLASSES"]).is_file() and Path(res["OUTPUT_REPORT"]).is_file()
    assert Path(res["OUTPUT_CLASSES"]).with_suffix(".qml").is_file()

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache"))
        plugin = helpers.load_provider()
        inproc = {k: str(v) for k, v in params.items()}
        inproc.update(OUTPUT_CLASSES=str(tmp_path / "py" / "classes.tif"), OUTPUT_PROBABILITY=None,
                      OUTPUT_CONFIDENCE=None, OUTPUT_REPORT=None)
        ok, res_py, fb = helpers.run("softcon:classify", inproc)
        plugin.unload()
    assert ok, fb.errors
    with rasterio.open(res["OUTPUT_CLASSES"]) as a, rasterio.open(res_py["OUTPUT_CLASSES"]) as b:
        assert a.crs == b.crs and a.transform == b.transform and a.shape == b.shape
        assert np.array_equal(a.read(1), b.read(1))
        assert a.tags()["CLASS_NAMES"] == b.tags()["CLASS_NAMES"]


def _fake_repo(root: Path) -> Path:
    """A minimal plugin repository (git, a core symlink, metadata) to build zips from."""
    (root / "core" / "weights").mkdir(parents=True)
    (root / "softcon_qgis").mkdir()
    (root / "core" / "__init__.py").write_text("")
    (root / "softcon_qgis" / "__init__.py").write_text("")
    (root / "softcon_qgis" / "core").symlink_to("../core", target_is_directory=True)
    (root / "softcon_qgis" / "metadata.txt").symlink_to("../metadata.txt")
    (root / "metadata.txt").write_text((helpers.ROOT / "metadata.txt").read_text())
    (root / "LICENSE").write_text("MIT")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "init"], check=True)
    return root


def _build(root: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(helpers.ROOT / "scripts" / "build_plugin_zip.py"), "--out-dir", str(out),
                           "--root", str(root)], capture_output=True, text=True, timeout=120)


def test_zip_holds_only_tracked_files_and_the_built_weights(tmp_path):
    root = _fake_repo(tmp_path / "repo")
    (root / "softcon_qgis" / "secrets.txt").write_text("token")  # untracked files lying in the folder
    (root / "core" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----")
    (root / "core" / "weights" / "galileo_nano_s2.safetensors").write_bytes(b"w" * 100)  # built, untracked
    (root / "core" / "weights" / "softcon_tiny_s2.safetensors").write_bytes(b"w" * 100)  # not for maps: left out
    proc = _build(root, tmp_path / "dist")
    assert proc.returncode == 0, proc.stderr
    names = set(zipfile.ZipFile(next((tmp_path / "dist").glob("*.zip"))).namelist())
    assert names == {"softcon_qgis/__init__.py", "softcon_qgis/core/__init__.py", "softcon_qgis/metadata.txt",
                     "softcon_qgis/LICENSE", "softcon_qgis/core/weights/galileo_nano_s2.safetensors"}


def test_zip_refuses_a_symlink_that_leaves_the_repository(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("secret")
    root = _fake_repo(tmp_path / "repo")
    (root / "softcon_qgis" / "extra").symlink_to(outside, target_is_directory=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], check=True)
    proc = _build(root, tmp_path / "dist")
    assert proc.returncode != 0 and "outside the repository" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not list((tmp_path / "dist").glob("*.zip"))
