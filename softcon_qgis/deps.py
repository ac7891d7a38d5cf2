"""Check that the Python packages SoftCon needs import in QGIS's Python, and install them with pip.

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
import json
import os
import platform
import shlex
import shutil
# subprocess runs pip, or the interpreter QGIS runs to check imports after pip: see _run().
import subprocess  # nosec B404
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

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

#: The modules whose import proves an install usable; :func:`verify` imports them. skops too: Classify's
#: random forests (``--method rf``/``auto``) are saved and loaded with it.
VERIFY_MODULES: tuple[str, ...] = ("torch", "timm", "rasterio", "pyproj", "shapely", "sklearn", "skops")

#: timm is imported through core's shim, which makes a CUDA-built torchvision importable on CPU torch.
IMPORT_THROUGH = {"timm": f"{__package__}.core.timm_compat"}

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

#: Disk used per byte downloaded (wheels are compressed), measured with the CPU install on Linux (Debian 12,
#: Python 3.11): 372 MB downloaded became 1.51 GB in the folder. Only used to state the disk space before.
DISK_PER_DOWNLOAD = 4.0


@dataclass(frozen=True)
class Missing:
    """A requirement that failed to import, with the reason Python gave."""

    module: str
    requirement: str
    error: str


@dataclass
class Plan:
    """What pip would install (from ``pip install --dry-run --report``), with the download size."""

    build: str
    cpu_index: bool = True  # whether the PyTorch CPU index was reachable (and is passed to pip)
    packages: list[tuple[str, str, str]] = field(default_factory=list)  # (name, version, url)
    download_bytes: int = 0
    unknown_sizes: list[str] = field(default_factory=list)  # packages whose size could not be read

    @property
    def torch_version(self) -> str:
        return next((v for n, v, _ in self.packages if n.lower() == "torch"), "")

    def summary(self) -> str:
        """Two lines for the confirmation dialog: what, how much to download, how much disk."""
        size = f"{self.download_bytes / 1e6:,.0f} MB"
        if self.unknown_sizes:
            size = f"at least {size} (size unknown for {', '.join(self.unknown_sizes)})"
        return (f"{len(self.packages)} packages, torch {self.torch_version} ({self.build.upper()} build).\n"
                f"Download: {size}; disk: about {DISK_PER_DOWNLOAD * self.download_bytes / 1e9:.1f} GB.")


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
        from qgis.core import QgsApplication

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
    import rasterio
    import torch

    from .core.timm_compat import timm

    return (f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
            f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__})")


def has_cuda_gpu() -> bool:
    """An NVIDIA driver is present (the CUDA build of torch would be used); never on macOS."""
    if platform.system() == "Darwin":
        return False
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def default_build() -> str:
    """``cuda`` where an NVIDIA GPU is present, else ``cpu`` (the small download)."""
    return "cuda" if has_cuda_gpu() else "cpu"


def torch_requirement(build: str, system: str | None = None) -> str:
    """The torch pin for ``build`` (``cpu`` or ``cuda``). Only Linux needs ``+cpu``: PyPI's Linux wheel is
    the CUDA build, while PyPI's Windows and macOS wheels are CPU builds (CUDA ones for Windows come
    from the PyTorch index, which the CUDA choice adds)."""
    system = system or platform.system()
    if build == "cpu" and system == "Linux":
        return f"torch=={TORCH_VERSION}+cpu"
    return f"torch=={TORCH_VERSION}"


def install_requirements(build: str, system: str | None = None) -> list[str]:
    """Every requirement, torch pinned for ``build``: the plugin always installs the full set together."""
    return [torch_requirement(build, system) if module == "torch" else req for module, req in REQUIREMENTS]


def index_reachable(url: str = TORCH_CPU_INDEX, timeout: float = 5.0) -> bool:
    """Whether the host of ``url`` accepts a connection within ``timeout`` s. pip would otherwise wait
    its full timeout, with retries, on an index that drops packets (many minutes) before moving on."""
    import socket
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def pip_command(
    requirements: list[str],
    target: str | os.PathLike,
    python: str | None = None,
    extra_args: tuple[str, ...] = (),
    build: str = "cpu",
    cpu_index: bool = True,
) -> list[str]:
    """The pip command line that installs ``requirements`` into ``target``. ``cpu_index=False`` leaves the
    PyTorch CPU index out (unreachable): the ``+cpu`` pin then comes from the user's own pip sources."""
    cmd = [python or python_executable(), "-m", "pip", "install", "--upgrade", "--target", str(target),
           "--disable-pip-version-check", "--no-warn-script-location", "--no-input", "--progress-bar", "off"]
    if any(r.startswith("torch") for r in requirements):
        if build == "cpu" and platform.system() == "Linux" and cpu_index:
            cmd += ["--extra-index-url", TORCH_CPU_INDEX]
        elif build == "cuda" and platform.system() == "Windows":
            cmd += ["--extra-index-url", TORCH_CUDA_INDEX_WINDOWS]
    return cmd + list(extra_args) + list(requirements)


def quote(cmd: list[str]) -> str:
    """A command line the user can paste into their shell (cmd.exe on Windows)."""
    return subprocess.list2cmdline(cmd) if platform.system() == "Windows" else shlex.join(cmd)


def fix_command(target: str | os.PathLike | None = None, build: str | None = None) -> str:
    """The one command that installs everything SoftCon needs into the plugin's folder."""
    build = build or default_build()
    target = target if target is not None else deps_dir()
    return quote(pip_command(install_requirements(build), target, build=build))


def explain(missing: list[Missing], target: str | os.PathLike | None = None) -> str:
    """What is missing, why, and how to fix it (shown in the message bar, log and errors)."""
    target = target if target is not None else deps_dir()
    lines = [
        f"SoftCon needs Python packages that QGIS's Python ({platform.python_version()}, "
        f"{python_executable()}) cannot import:",
    ]
    lines += [f"  - {m.module} ({m.requirement}): {m.error}" for m in missing]
    lines += [
        "Fix: Plugins > SoftCon > Install Python dependencies (the plugin runs pip for you and states the "
        "download size first; restart QGIS afterwards), or run this one command, then restart QGIS:",
        f"  {fix_command(target)}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- running pip
def _environment() -> dict[str, str]:
    """QGIS's environment (PATH, PYTHONHOME and the DLL folders OSGeo4W needs) without the settings that
    would let another Python's packages into pip's own process."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PIP_TARGET")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _pump(stream, pending) -> None:
    for line in stream:
        pending.put(line)


def _run(cmd: list[str], on_line: Callable[[str], None] | None = None,
         is_cancelled: Callable[[], bool] | None = None, timeout: float = 3600) -> tuple[int, str]:
    """Run ``cmd`` (pip, or the interpreter QGIS runs for the import check), passing each output line to
    ``on_line``; stops it when ``is_cancelled()``. Returns (exit code, whole output); -1 if it could not
    start, -2 if cancelled or out of time."""
    import queue
    import threading
    import time

    lines: list[str] = []
    try:
        # The plugin's only subprocesses: pip and the import check, with fixed argument lists (no shell),
        # run by the interpreter QGIS itself runs; requirement strings come from REQUIREMENTS above.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,  # nosec B603
                                encoding="utf-8", errors="replace", env=_environment(), bufsize=1)
    except OSError as exc:
        return -1, f"Could not run {quote(cmd)}: {exc}"
    pending: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(proc.stdout, pending), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive() or not pending.empty():
        try:  # a 200 MB wheel prints nothing for minutes: poll, so Cancel acts within half a second
            lines.append(pending.get(timeout=0.5).rstrip("\n"))
            if on_line is not None:
                on_line(lines[-1])
        except queue.Empty:
            pass
        if (is_cancelled is not None and is_cancelled()) or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            return -2, "\n".join(lines + ["Stopped."])
    return proc.wait(), "\n".join(lines)


def plan(build: str, python: str | None = None, size_of: Callable[[str], int | None] | None = None,
         extra_args: tuple[str, ...] = (), requirements: list[str] | None = None,
         cpu_index: bool = True) -> tuple[Plan | None, str]:
    """Ask pip what it would install (``--dry-run --report``, about 20 s) and add up the download size.

    ``size_of(url)`` returns a remote file's size (the plugin asks with a HEAD request through QGIS's
    network settings); local files are measured directly. Returns (plan, pip's output); plan is None
    when pip cannot resolve the requirements (e.g. the CPU build of torch is not reachable).
    """
    from urllib.parse import unquote, urlparse

    reqs = requirements if requirements is not None else install_requirements(build)
    with tempfile.TemporaryDirectory(prefix="softcon-pip-plan-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = pip_command(reqs, Path(tmp) / "target", python, extra_args, build, cpu_index)
        at = cmd.index("install") + 1
        cmd[at:at] = ["--dry-run", "--ignore-installed", "--report", str(report)]
        code, output = _run(cmd, timeout=900)
        if code != 0 or not report.is_file():
            if "no such option" in output:  # --dry-run and --report came with pip 22.2
                py = python or python_executable()
                output += (f"\nThis pip is older than 22.2. The one command that fixes it: "
                           f"{quote([py, '-m', 'pip', 'install', '--upgrade', 'pip'])}")
            return None, output
        items = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    result = Plan(build=build, cpu_index=cpu_index)
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        url = item.get("download_info", {}).get("url", "")
        result.packages.append((name, version, url))
        parsed = urlparse(url)
        size = None
        if parsed.scheme == "file" and Path(unquote(parsed.path)).is_file():
            size = Path(unquote(parsed.path)).stat().st_size
        elif size_of is not None and parsed.scheme in ("http", "https"):
            size = size_of(url)
        if size is None:
            result.unknown_sizes.append(name)
        else:
            result.download_bytes += size
    return result, output


def verify(folder: str | os.PathLike, path: list[str] | None = None, python: str | None = None,
           modules: tuple[str, ...] = VERIFY_MODULES) -> list[Missing]:
    """Import ``modules`` in a fresh interpreter whose ``sys.path`` is exactly what QGIS will use
    (``path``, default :func:`path_with_deps` of ``sys.path``), so a shadowed or broken package shows
    here, before the user restarts QGIS. Returns the failures."""
    path = path if path is not None else path_with_deps(folder)
    script = (
        "import importlib, json, sys\n"
        "sys.path[:] = json.loads(sys.argv[1])\n"
        "out = {}\n"
        "through = json.loads(sys.argv[2])\n"
        "for m in sys.argv[3:]:\n"
        "    try:\n"
        "        importlib.import_module(through.get(m, m)); out[m] = ''\n"
        "    except BaseException as e:\n"
        "        out[m] = f'{type(e).__name__}: {e}'\n"
        "print('SOFTCON-VERIFY ' + json.dumps(out))\n")
    code, output = _run([python or python_executable(), "-I", "-c", script, json.dumps(path),
                         json.dumps(IMPORT_THROUGH), *modules],
                        timeout=600)
    requirement = dict(REQUIREMENTS)
    marker = next((ln for ln in output.splitlines() if ln.startswith("SOFTCON-VERIFY ")), None)
    if marker is None:
        return [Missing(m, requirement.get(m, m), f"the check did not run (exit {code}): {output[-500:]}")
                for m in modules]
    results = json.loads(marker[len("SOFTCON-VERIFY "):])
    return [Missing(m, requirement.get(m, m), err) for m, err in results.items() if err]


def install(
    requirements: list[str],
    target: str | os.PathLike | None = None,
    python: str | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 3600,
    build: str = "cpu",
    on_line: Callable[[str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    verify_modules: tuple[str, ...] = VERIFY_MODULES,
    cpu_index: bool = True,
) -> tuple[bool, str]:
    """Install ``requirements`` with pip into a fresh folder beside ``target``, check that
    ``verify_modules`` import with it, and only then let it replace ``target``; returns (success, text).

    A failed, cancelled or unverified install leaves the previous folder as it was. Runs in the
    caller's thread: the plugin calls it from a ``QgsTask`` so QGIS stays responsive.
    """
    target = Path(target if target is not None else deps_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    try:
        cmd = pip_command(requirements, staging, python, extra_args, build, cpu_index)
        if on_line is not None:
            on_line(f"$ {quote(cmd)}")
        code, output = _run(cmd, on_line, is_cancelled, timeout)
        if code != 0:
            if "No module named pip" in output:
                output += ("\nThis Python has no pip. On Debian/Ubuntu: sudo apt install python3-pip; "
                           "on Windows use the OSGeo4W installer's python3-pip package.")
            if code == -2:
                return False, output[-4000:] + "\nInstall stopped; nothing was changed."
            return False, output[-4000:] + f"\npip failed (exit code {code}); nothing was changed."
        if on_line is not None:
            on_line("Checking that the packages import with the path QGIS will use...")
        failed = verify(staging, _path_for(staging, target), python, verify_modules) if verify_modules else []
        if failed:
            lines = [f"  - {m.module}: {m.error}" for m in failed]
            fix = quote(pip_command(requirements, target, python, extra_args, build, cpu_index))
            return False, "\n".join([output[-3000:], "pip finished, but these do not import:", *lines,
                                     "Nothing was changed. The one command that fixes it (then restart QGIS):",
                                     f"  {fix}"])
        _replace(staging, target)
        add_deps_to_path(target)
        return True, output[-4000:] + f"\nInstalled into {target}; restart QGIS to use SoftCon."
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _path_for(staging: Path, target: Path) -> list[str]:
    """The path QGIS will use once ``staging`` is ``target``: target's place, staging's files."""
    return [str(staging) if p == str(target) else p for p in path_with_deps(target)]


def _replace(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target``; the old folder is removed (best effort: on Windows a DLL the running
    QGIS has loaded cannot be deleted until it exits)."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
