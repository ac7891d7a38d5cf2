"""Check that the Python packages SoftCon needs import in QGIS's Python, and install the missing ones.

QGIS ships its own Python, which rarely has torch or timm. Instead of a traceback at load, the plugin
explains what is missing and how to install it, and can run pip itself with ``--target`` into a folder
of its own that it puts on ``sys.path``. That folder lives in the QGIS profile
(``<profile>/python/softcon_qgis_deps/py3XX``), not inside the plugin folder, because the plugin
manager deletes the plugin folder on every upgrade or uninstall; it is keyed by the Python version
because compiled wheels (torch, rasterio) only fit the Python they were built for.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
# subprocess runs pip, and only pip, with a fixed argument list: see install().
import subprocess  # nosec B404
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
    ("skops", "skops==0.16.0"),
    ("safetensors", "safetensors==0.8.0"),
    ("huggingface_hub", "huggingface-hub==2.4.0"),
    ("tqdm", "tqdm==4.70.1"),
    ("pyogrio", "pyogrio==0.13.0"),
    ("PIL", "pillow>=10"),
)

#: timm is imported through core's shim, which makes a CUDA-built torchvision importable on CPU torch.
IMPORT_THROUGH = {"timm": f"{__package__}.core.timm_compat"}

#: Wheels that bundle their own GDAL / PROJ / GEOS (in a ``<name>.libs`` folder next to the package).
#: Inside QGIS on Linux, QGIS's own libgdal/libproj/libgeos are already loaded globally, so by default
#: the wheels' extension modules would bind to QGIS's copies (rasterio then silently runs on QGIS's
#: GDAL 3.6 instead of its own 3.10), and both copies of PROJ destroy the same static objects at exit
#: (``qgis_process`` ends with a double free, exit code 134/139, after printing its results).
#: :func:`isolate_bundled_libraries` loads them with ``RTLD_DEEPBIND`` so each uses its own copy.
BUNDLING_WHEELS: tuple[str, ...] = ("pyproj", "shapely", "rasterio", "pyogrio", "fiona")

#: PyPI's Linux torch wheels bundle CUDA (several GB); the CPU index has the small ones. Windows and
#: macOS wheels on PyPI are CPU (or MPS) builds already.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Missing:
    """A requirement that failed to import, with the reason Python gave."""

    module: str
    requirement: str
    error: str


def deps_dir(settings_dir: str | os.PathLike | None = None) -> Path:
    """The plugin's own package folder for this Python version (not created here)."""
    if settings_dir is None:
        from qgis.core import QgsApplication

        settings_dir = QgsApplication.qgisSettingsDirPath()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(settings_dir) / "python" / "softcon_qgis_deps" / tag


def add_deps_to_path(folder: str | os.PathLike | None = None) -> bool:
    """Append the plugin's package folder to ``sys.path`` if it exists.

    Appended, not prepended: packages QGIS already has (numpy, GDAL) keep precedence, so a wheel
    installed here can never shadow the ones QGIS's own libraries were built against.
    """
    path = str(folder if folder is not None else deps_dir())
    if os.path.isdir(path) and path not in sys.path:
        sys.path.append(path)
        importlib.invalidate_caches()
        return True
    return False


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
    import rasterio
    import torch

    from .core.timm_compat import timm

    return (f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")


def python_executable() -> str:
    """The Python interpreter of this QGIS (``sys.executable`` is the QGIS binary on Windows and Linux)."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        Path(sys.prefix) / "python.exe",  # OSGeo4W, QGIS standalone on Windows
        Path(sys.prefix) / "python3.exe",
        Path(sys.prefix) / "bin" / f"python{version}",  # macOS bundle, Linux
        Path(sys.prefix) / "bin" / "python3",
    ]
    for cand in candidates:
        if cand.is_file():
            return str(cand)
    found = shutil.which(f"python{version}") or shutil.which("python3")
    return found or "python3"


def pip_command(
    requirements: list[str],
    target: str | os.PathLike,
    python: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> list[str]:
    """The pip command line that installs ``requirements`` into ``target``."""
    cmd = [python or python_executable(), "-m", "pip", "install", "--upgrade", "--target", str(target),
           "--disable-pip-version-check", "--no-warn-script-location", "--no-input"]
    if any(r.startswith("torch") for r in requirements) and platform.system() == "Linux":
        cmd += ["--extra-index-url", TORCH_CPU_INDEX]
    return cmd + list(extra_args) + list(requirements)


def explain(missing: list[Missing], target: str | os.PathLike | None = None) -> str:
    """What is missing, why, and the exact ways to install it (shown in the message bar, log and errors)."""
    target = target if target is not None else deps_dir()
    reqs = [m.requirement for m in missing]
    lines = [
        f"SoftCon needs Python packages that QGIS's Python ({platform.python_version()}, "
        f"{python_executable()}) cannot import:",
    ]
    lines += [f"  - {m.module} ({m.requirement}): {m.error}" for m in missing]
    quoted = " ".join(f'"{r}"' for r in reqs)
    lines += [
        "Install them in one of these ways:",
        "  1. Plugins > SoftCon > Install Python dependencies: the plugin runs pip for you into "
        f"{target} (about 1 GB with torch; restart QGIS afterwards).",
        f"  2. Run it yourself: {' '.join(pip_command([], target))} {quoted}",
        "  3. Install them into QGIS's Python system-wide: on Windows from the OSGeo4W Shell "
        f"`python -m pip install {quoted}`; on Linux into the Python QGIS uses "
        f"`{python_executable()} -m pip install --user {quoted}`.",
    ]
    return "\n".join(lines)


def install(
    requirements: list[str],
    target: str | os.PathLike | None = None,
    python: str | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 3600,
) -> tuple[bool, str]:
    """Run pip to install ``requirements`` into ``target``; returns (success, pip's output tail).

    Runs in the caller's thread: the plugin calls it from a ``QgsTask`` so QGIS stays responsive.
    """
    target = Path(target if target is not None else deps_dir())
    target.mkdir(parents=True, exist_ok=True)
    cmd = pip_command(requirements, target, python, extra_args)
    try:
        # The one subprocess call of the plugin: pip with a fixed argument list (no shell), the
        # interpreter QGIS itself runs on, and requirement strings from REQUIREMENTS above.
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)  # nosec B603
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"Could not run pip ({' '.join(cmd)}): {exc}"
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        if "No module named pip" in output:
            output += ("\nThis Python has no pip. On Debian/Ubuntu: sudo apt install python3-pip; "
                       "on Windows use the OSGeo4W installer's python3-pip package.")
        return False, output[-4000:]
    add_deps_to_path(target)
    return True, output[-4000:]
