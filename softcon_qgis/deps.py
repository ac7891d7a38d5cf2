"""Check that the Python packages SoftCon needs import in QGIS's Python (installing them: :mod:`.install`).

QGIS ships its own Python, which rarely has torch or timm. Instead of a traceback at load, the plugin
explains what is missing and can run pip itself with ``--target`` into a folder of its own. That folder
lives in the QGIS profile (``<profile>/python/softcon_qgis_deps/py3XX``), not inside the plugin folder,
because the plugin manager deletes the plugin folder on every upgrade; it is keyed by the Python version
because compiled wheels (torch, rasterio) only fit the Python they were built for.

What makes the install work for real (each point was a failure a user met):
- pip runs under the interpreter QGIS itself runs, found from ``sys.prefix``/``sys.exec_prefix``
  (:func:`find_python`); inside QGIS ``sys.executable`` is ``qgis.bin`` / ``qgis-bin.exe`` / ``QGIS``.
- Every requirement is installed together, in one pip run, into a fresh folder that replaces the old one
  only when the new one imports: a partial install (only the package found missing) mixes versions.
- torch is pinned to the tested version, and on Linux without a CUDA GPU to its ``+cpu`` build: unpinned,
  pip takes PyPI's CUDA build (2.5 GB plus 3 GB of nvidia libraries) whenever the CPU index is slow or
  unreachable. numpy stays below 2 for QGIS's GDAL bindings.
- The folder goes *before* the system's site-/dist-packages on ``sys.path``: Debian's sympy 1.11 in
  dist-packages otherwise hides the sympy torch needs (``cannot import name 'equal_valued'``).
- The result is verified by importing the packages in a subprocess with exactly the ``sys.path`` QGIS
  will use, and a failure names the one command that fixes it.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

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

#: Wheels that bundle their own GDAL / PROJ / GEOS (in a ``<name>.libs`` folder next to the package).
#: Inside QGIS on Linux, QGIS's own libgdal/libproj/libgeos are already loaded globally, so by default
#: the wheels' extension modules would bind to QGIS's copies (rasterio then silently runs on QGIS's
#: GDAL 3.6 instead of its own 3.10), and both copies of PROJ destroy the same static objects at exit
#: (``qgis_process`` ends with a double free, exit code 134/139, after printing its results).
#: :func:`isolate_bundled_libraries` loads them with ``RTLD_DEEPBIND`` so each uses its own copy.
BUNDLING_WHEELS: tuple[str, ...] = ("pyproj", "shapely", "rasterio", "pyogrio", "fiona")

#: PyPI's Linux torch wheels bundle CUDA (several GB); the CPU builds (``+cpu``) come from this index.
#: Windows and macOS wheels on PyPI are CPU (or MPS) builds already.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: PyPI's Windows wheels are CPU builds; the CUDA choice adds this index (CUDA 12.8 builds; not tried here).
TORCH_CUDA_INDEX_WINDOWS = "https://download.pytorch.org/whl/cu128"


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
    """The interpreter QGIS runs (``sys.executable`` is the QGIS binary inside QGIS)."""
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


def path_with_deps(folder: str | os.PathLike, path: Iterable[str] | None = None) -> list[str]:
    """``path`` (default ``sys.path``) with ``folder`` just before the first site-/dist-packages entry.

    Before, so that the versions pip resolved together win over older system copies (Debian's sympy,
    scipy, numpy); after the standard library and QGIS's own python folders, which it never shadows.
    """
    entries = [p for p in (sys.path if path is None else path) if p != str(folder)]
    at = next((i for i, p in enumerate(entries) if Path(p).name in ("site-packages", "dist-packages")),
              len(entries))
    return entries[:at] + [str(folder)] + entries[at:]


def add_deps_to_path(folder: str | os.PathLike | None = None) -> bool:
    """Put the plugin's package folder on ``sys.path`` (see :func:`path_with_deps`) if it exists."""
    path = str(folder if folder is not None else deps_dir())
    if not os.path.isdir(path):
        return False
    sys.path[:] = path_with_deps(path)
    importlib.invalidate_caches()
    return True


def isolate_bundled_libraries(packages: tuple[str, ...] = BUNDLING_WHEELS) -> list[str]:
    """Import wheels that bundle GIS libraries with ``RTLD_DEEPBIND`` (Linux only); returns their names.

    Every extension module of the package is imported while the flag is set: a submodule loaded
    later without it would bind to QGIS's library again and mix two GDAL versions in one package.
    Packages already imported, absent, or from the system (no ``.libs`` folder) are left alone.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", None)
    if deepbind is None or platform.system() != "Linux":
        return []
    done = []
    flags = sys.getdlopenflags()
    for name in packages:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        pkg_dir = Path(spec.origin).parent
        if not (pkg_dir.parent / f"{name}.libs").is_dir():
            continue
        modules = [name] + sorted(
            ".".join((name,) + p.relative_to(pkg_dir).parent.parts + (p.name.split(".")[0],))
            for p in pkg_dir.rglob("*.so") if "tests" not in p.parts)
        sys.setdlopenflags(flags | deepbind)
        try:
            for mod in modules:
                importlib.import_module(mod)
            done.append(name)
        except Exception as exc:  # a broken install is reported by check(), with the fix
            importlib.invalidate_caches()
            done.append(f"{name} (failed: {exc})")
        finally:
            sys.setdlopenflags(flags)
    return done


# ------------------------------------------------------------------------------------- checking
def check(requirements: tuple[tuple[str, str], ...] | None = None) -> list[Missing]:
    """Import each requirement (default :data:`REQUIREMENTS`); return the ones that fail (ImportError, or
    e.g. an OSError from a DLL that does not load)."""
    missing = []
    for module, requirement in (REQUIREMENTS if requirements is None else requirements):
        try:
            importlib.import_module(IMPORT_THROUGH.get(module, module))
        except Exception as exc:  # any failure to import means the package is unusable here
            missing.append(Missing(module, requirement, f"{type(exc).__name__}: {exc}"))
    return missing


def versions() -> str:
    """One line naming the versions that matter when something goes wrong (for the log)."""
    # the packages this module checks for: imported only here, once they are known to be installed
    import rasterio
    import torch

    from .core.models.timm_compat import timm

    return (f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")
