"""The Python packages SoftCon's worker needs, the interpreter that runs it, and where the packages go
(installing them: :mod:`.install`; running the worker: :mod:`.worker`).

QGIS ships its own Python, which rarely has torch or timm. The plugin can run pip itself with ``--target``
into a folder of its own. That folder lives in the QGIS profile (``<profile>/python/softcon_qgis_deps/py3XX``),
not inside the plugin folder, because the plugin manager deletes the plugin folder on every upgrade; it is
keyed by the Python version because compiled wheels (torch, rasterio) only fit the Python they were built for.
QGIS's own process never imports these packages: only the worker does, so they are usable as soon as they are
installed (no restart), and QGIS's start-up checks them by reading the install record (:func:`problem`)
instead of importing torch (4-7 s).

What makes the install work for real (each point was a failure a user met):
- pip and the worker run under the interpreter QGIS itself runs, found from ``sys.prefix``/``sys.exec_prefix``
  (:func:`find_python`); inside QGIS ``sys.executable`` is ``qgis.bin`` / ``qgis-bin.exe`` / ``QGIS``.
- Every requirement is installed together, in one pip run, into a fresh folder that replaces the old one
  only when the new one imports: a partial install (only the package found missing) mixes versions.
- torch is pinned to the tested version, and on Linux without a CUDA GPU to its ``+cpu`` build: unpinned,
  pip takes PyPI's CUDA build (2.5 GB plus 3 GB of nvidia libraries) whenever the CPU index is slow or
  unreachable. numpy stays below 2 for QGIS's GDAL bindings.
- The folder goes *before* the system's site-/dist-packages (first on the worker's ``PYTHONPATH``): Debian's
  sympy 1.11 in dist-packages otherwise hides the sympy torch needs (``cannot import name 'equal_valued'``).
- The result is verified by importing the packages in the worker's own environment, and a failure names the
  one command that fixes it.
"""
from __future__ import annotations

import importlib.machinery
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

#: (import name, pip requirement). The pins are the project's own (pyproject.toml); a test keeps
#: them in step. numpy stays below 2: QGIS's GDAL bindings of this generation are built against numpy 1.
REQUIREMENTS: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy>=1.26,<2"),
    ("torch", "torch>=2.4,<=2.14.1"),
    ("timm", "timm==1.0.31"),
    ("rasterio", "rasterio==1.4.4"),
    ("shapely", "shapely==2.2.0"),
    ("pyproj", "pyproj==3.7.2"),
    ("sklearn", "scikit-learn==1.9.1"),
    ("scipy", "scipy==1.17.1"),
    ("skops", "skops==0.16.0"),
    ("safetensors", "safetensors==0.8.0"),
    ("huggingface_hub", "huggingface-hub==2.4.0"),
    ("tqdm", "tqdm==4.70.1"),
    ("pyogrio", "pyogrio==0.13.0"),
    ("PIL", "pillow>=10"),
)

#: The torch release the project is tested with (constraints-cpu.txt; a test keeps them in step). The
#: installer pins it exactly so the build (CPU or CUDA) is the one the user chose.
TORCH_VERSION = "2.13.0"

#: The modules whose import proves an install usable; :func:`.install.verify` imports them. skops too: Classify's
#: random forests (``--method rf``/``auto``) are saved and loaded with it.
VERIFY_MODULES: tuple[str, ...] = ("torch", "timm", "rasterio", "pyproj", "shapely", "sklearn", "skops")

#: timm is imported through core's shim, which makes a CUDA-built torchvision importable on CPU torch.
IMPORT_THROUGH = {"timm": f"{__package__}.core.models.timm_compat"}

#: PyPI's Linux torch wheels bundle CUDA (several GB); the CPU builds (``+cpu``) come from this index.
#: Windows and macOS wheels on PyPI are CPU (or MPS) builds already.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: PyPI's Windows wheels are CPU builds; the CUDA choice adds this index (CUDA 12.8 builds; not tried here).
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"
#: Environment variable naming the Python that runs pip and the worker instead (developers: the repository's
#: .venv, which the tests use).
PYTHON_OVERRIDE = "SOFTCON_PYTHON"
#: The install record the installer writes into the packages folder (what, for which Python and plugin).
STAMP = "softcon-install.json"


@dataclass(frozen=True)
class Missing:
    """A requirement that failed to import, with the reason Python gave."""

    module: str
    requirement: str
    error: str


# ------------------------------------------------------------------------------------- the interpreter
def find_python(prefix: str, exec_prefix: str, version: tuple[int, int], system: str,
                executable: str = "") -> str | None:
    """The Python interpreter of a QGIS install, found from its ``sys.prefix``/``sys.exec_prefix``.

    Layouts: Linux packages and virtual environments (``<prefix>/bin/python3.X``); Windows OSGeo4W and
    the standalone installer (``<OSGeo4W>/apps/Python3X/python.exe`` = ``sys.prefix``); macOS QGIS.app
    (``Contents/MacOS/bin/python3`` or a ``Python.framework`` inside ``Contents/Frameworks``).
    ``executable`` (``sys.executable``) is used only when it is itself a Python of this version.
    Returns None when nothing matches.
    """
    major, minor = version
    candidates: list[Path] = []
    for root in dict.fromkeys((exec_prefix, prefix)):  # exec_prefix first: it holds the binaries
        if not root:
            continue
        base = Path(root)
        if system == "Windows":
            candidates += [base / "python.exe", base / f"python{major}.exe", base / "Scripts" / "python.exe"]
        else:
            candidates += [base / "bin" / f"python{major}.{minor}", base / "bin" / f"python{major}",
                           base / "bin" / "python"]
            if system == "Darwin" and ".app" in str(base):
                app = Path(str(base)[:str(base).index(".app") + 4])
                candidates += [app / "Contents" / "MacOS" / "bin" / f"python{major}.{minor}",
                               app / "Contents" / "MacOS" / "bin" / f"python{major}"]
    exe = Path(executable) if executable else None
    if exe is not None and exe.name.lower().startswith("python"):
        candidates.append(exe)
    return next((str(c) for c in candidates if c.is_file()), None)


def python_executable() -> str:
    """The interpreter that runs pip and the worker: ``$SOFTCON_PYTHON`` when set, else the one QGIS runs
    (``sys.executable`` is the QGIS binary inside QGIS)."""
    if os.environ.get(PYTHON_OVERRIDE):
        return os.environ[PYTHON_OVERRIDE]
    found = find_python(sys.prefix, sys.exec_prefix, sys.version_info[:2], platform.system(), sys.executable)
    if found:
        return found
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return shutil.which(f"python{version}") or shutil.which("python3") or "python3"


# ------------------------------------------------------------------------------------- the folder
def deps_dir(settings_dir: str | os.PathLike | None = None) -> Path:
    """The plugin's own package folder for this Python version (not created here)."""
    if settings_dir is None:
        from qgis.core import QgsApplication  # only inside QGIS: the installer's checks run without it

        settings_dir = QgsApplication.qgisSettingsDirPath()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(settings_dir) / "python" / "softcon_qgis_deps" / tag


def requirements_key() -> dict[str, object]:
    """What an install must match to be current: the requirement pins, the torch release and the Python."""
    return {"requirements": [r for _, r in REQUIREMENTS], "torch": TORCH_VERSION,
            "python": f"{sys.version_info.major}.{sys.version_info.minor}"}


def write_stamp(folder: str | os.PathLike, build: str) -> Path:
    """Record in ``folder`` what was installed there (the installer calls it before swapping the folder in)."""
    path = Path(folder) / STAMP
    path.write_text(json.dumps(dict(requirements_key(), build=build), indent=1), encoding="utf-8")
    return path


def problem(folder: str | os.PathLike | None = None) -> str:
    """Why the worker would lack packages, or ``""``. Cheap enough for every QGIS start (a file read, or a look
    for the modules on the path; nothing is imported): with the plugin's packages folder, its install record
    must match :func:`requirements_key`; without one, every module must be on QGIS's Python path (a system-wide
    install). ``$SOFTCON_PYTHON`` (a developer's own Python) is trusted: the worker reports what it lacks."""
    if os.environ.get(PYTHON_OVERRIDE):
        return ""
    folder = Path(folder) if folder is not None else deps_dir()
    if folder.is_dir():
        try:
            stamp = json.loads((folder / STAMP).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{folder} has no install record ({STAMP}): it was not installed by this plugin version."
        changed = [k for k, v in requirements_key().items() if stamp.get(k) != v]
        return f"the packages in {folder} are not the ones this plugin version needs ({', '.join(changed)})." \
            if changed else ""
    absent = [m for m, _ in REQUIREMENTS if importlib.machinery.PathFinder.find_spec(m) is None]
    return f"QGIS's Python has no {', '.join(absent)}." if absent else ""
