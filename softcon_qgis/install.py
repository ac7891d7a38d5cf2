"""Install what :mod:`.deps` finds missing: one pip run with ``--target`` into a fresh folder, verified in a
subprocess with exactly the ``sys.path`` QGIS will use, that replaces the old folder only when it imports.
Why each step is there: see :mod:`.deps`.
"""
from __future__ import annotations

import json
import os
import platform
import queue
import shlex
import shutil
import socket
# subprocess runs pip, or the interpreter QGIS runs to check imports after pip: see _run().
import subprocess  # nosec B404
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlparse

from . import deps


#: Disk used per byte downloaded (wheels are compressed), measured with the CPU install on Linux (Debian 12,
#: Python 3.11): 372 MB downloaded became 1.51 GB in the folder. Only used to state the disk space before.
DISK_PER_DOWNLOAD = 4.0


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
        return f"torch=={deps.TORCH_VERSION}+cpu"
    return f"torch=={deps.TORCH_VERSION}"


def install_requirements(build: str, system: str | None = None) -> list[str]:
    """Every requirement, torch pinned for ``build``: the plugin always installs the full set together."""
    return [torch_requirement(build, system) if module == "torch" else req for module, req in deps.REQUIREMENTS]


def index_reachable(url: str = deps.TORCH_CPU_INDEX, timeout: float = 5.0) -> bool:
    """Whether the host of ``url`` accepts a connection within ``timeout`` s. pip would otherwise wait
    its full timeout, with retries, on an index that drops packets (many minutes) before moving on."""
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
    cmd = [python or deps.python_executable(), "-m", "pip", "install", "--upgrade", "--target", str(target),
           "--disable-pip-version-check", "--no-warn-script-location", "--no-input", "--progress-bar", "off"]
    if any(r.startswith("torch") for r in requirements):
        if build == "cpu" and platform.system() == "Linux" and cpu_index:
            cmd += ["--extra-index-url", deps.TORCH_CPU_INDEX]
        elif build == "cuda" and platform.system() == "Windows":
            cmd += ["--extra-index-url", deps.TORCH_CUDA_INDEX_WINDOWS]
    return cmd + list(extra_args) + list(requirements)


def quote(cmd: list[str]) -> str:
    """A command line the user can paste into their shell (cmd.exe on Windows)."""
    return subprocess.list2cmdline(cmd) if platform.system() == "Windows" else shlex.join(cmd)


def fix_command(target: str | os.PathLike | None = None, build: str | None = None) -> str:
    """The one command that installs everything SoftCon needs into the plugin's folder."""
    build = build or default_build()
    target = target if target is not None else deps.deps_dir()
    return quote(pip_command(install_requirements(build), target, build=build))


def explain(missing: list[deps.Missing], target: str | os.PathLike | None = None) -> str:
    """What is missing, why, and how to fix it (shown in the message bar, log and errors)."""
    target = target if target is not None else deps.deps_dir()
    lines = [
        f"SoftCon needs Python packages that QGIS's Python ({platform.python_version()}, "
        f"{deps.python_executable()}) cannot import:",
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
    lines: list[str] = []
    try:
        # The plugin's only subprocesses: pip and the import check, with fixed argument lists (no shell),
        # run by the interpreter QGIS itself runs; requirement strings come from deps.REQUIREMENTS above.
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
    reqs = requirements if requirements is not None else install_requirements(build)
    with tempfile.TemporaryDirectory(prefix="softcon-pip-plan-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = pip_command(reqs, Path(tmp) / "target", python, extra_args, build, cpu_index)
        at = cmd.index("install") + 1
        cmd[at:at] = ["--dry-run", "--ignore-installed", "--report", str(report)]
        code, output = _run(cmd, timeout=900)
        if code != 0 or not report.is_file():
            if "no such option" in output:  # --dry-run and --report came with pip 22.2
                py = python or deps.python_executable()
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
           modules: tuple[str, ...] = deps.VERIFY_MODULES) -> list[deps.Missing]:
    """Import ``modules`` in a fresh interpreter whose ``sys.path`` is exactly what QGIS will use
    (``path``, default :func:`path_with_deps` of ``sys.path``), so a shadowed or broken package shows
    here, before the user restarts QGIS. Returns the failures."""
    path = path if path is not None else deps.path_with_deps(folder)
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
    code, output = _run([python or deps.python_executable(), "-I", "-c", script, json.dumps(path),
                         json.dumps(deps.IMPORT_THROUGH), *modules],
                        timeout=600)
    requirement = dict(deps.REQUIREMENTS)
    marker = next((ln for ln in output.splitlines() if ln.startswith("SOFTCON-VERIFY ")), None)
    if marker is None:
        return [deps.Missing(m, requirement.get(m, m), f"the check did not run (exit {code}): {output[-500:]}")
                for m in modules]
    results = json.loads(marker[len("SOFTCON-VERIFY "):])
    return [deps.Missing(m, requirement.get(m, m), err) for m, err in results.items() if err]


def install(
    requirements: list[str],
    target: str | os.PathLike | None = None,
    python: str | None = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 3600,
    build: str = "cpu",
    on_line: Callable[[str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    verify_modules: tuple[str, ...] = deps.VERIFY_MODULES,
    cpu_index: bool = True,
) -> tuple[bool, str]:
    """Install ``requirements`` with pip into a fresh folder beside ``target``, check that
    ``verify_modules`` import with it, and only then let it replace ``target``; returns (success, text).

    A failed, cancelled or unverified install leaves the previous folder as it was. Runs in the
    caller's thread: the plugin calls it from a ``QgsTask`` so QGIS stays responsive.
    """
    target = Path(target if target is not None else deps.deps_dir())
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
        deps.add_deps_to_path(target)
        return True, output[-4000:] + f"\nInstalled into {target}; restart QGIS to use SoftCon."
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _path_for(staging: Path, target: Path) -> list[str]:
    """The path QGIS will use once ``staging`` is ``target``: target's place, staging's files."""
    return [str(staging) if p == str(target) else p for p in deps.path_with_deps(target)]


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
