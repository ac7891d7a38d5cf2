"""Run SoftCon's command lines in a child Python process, the way QGIS's GRASS, SAGA and OTB providers run
their tools: ``python -m softcon_qgis.core.<cli> ARGS``, the very command a user can run in a shell.

Why not in QGIS's own process (each was met by a user):
- speed: QGIS loads Debian's pthread OpenBLAS (libgdal -> libarmadillo -> libblas), torch's matrix products
  end up in it and its threads spin; ``core.embed`` ran 42x slower there than on the command line;
- installing: the Python packages the plugin installs (numpy 1.26, torch...) cannot replace modules QGIS
  has already loaded (its numpy 1.24), so a restart was needed; a fresh interpreter just uses them;
- safety: a crash in a native library (or the kernel's out-of-memory kill) ends the worker, not QGIS.

The child gets the plugin's package folder and the installed packages first on ``PYTHONPATH`` and
``SOFTCON_PROGRESS=jsonl``, so it reports progress, log lines, its result and errors as JSON lines on
stdout (:mod:`.core.progress`, stdlib-only like this module). Cancel is SIGTERM, which the child turns
into a clean stop; if it is still there after :data:`GRACE_S`, it is killed. stderr is kept for the report
of a crash.
"""
from __future__ import annotations

import collections
import json
import os
import platform
import queue
import shlex
import signal
# subprocess runs the SoftCon command lines with the interpreter QGIS runs: see run().
import subprocess  # nosec B404
import threading
from pathlib import Path
from typing import Callable

from . import deps
from .core.errors import Cancelled
from .core.progress import PROTOCOL, Progress

#: Seconds between the polite stop (SIGTERM) and the kill.
GRACE_S = 2.0
#: stderr lines quoted when a worker crashes.
TAIL_LINES = 15
#: The folder that holds the plugin package (a profile's ``python/plugins``, or the repository root).
PLUGIN_PARENT = Path(__file__).resolve().parent.parent


class WorkerError(Exception):
    """The worker failed: its message is the one a user reads (a SoftCon error, or a crash with its last lines)."""


class MissingPackages(WorkerError):
    """The worker could not import a package it needs (the message is Python's import error)."""


def environment(deps_folder: str | os.PathLike | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: QGIS's own (PATH, PYTHONHOME, the DLL folders OSGeo4W needs), with the plugin's
    parent folder and the installed packages first on ``PYTHONPATH`` (before the system's site-packages:
    Debian's sympy 1.11 there breaks torch), the JSON-lines protocol on, and no user site-packages."""
    env = dict(os.environ if base is None else base)
    folder = Path(deps_folder) if deps_folder is not None else deps.deps_dir()
    path = [str(PLUGIN_PARENT)] + ([str(folder)] if folder.is_dir() else [])
    if env.get("PYTHONPATH"):
        path.append(env["PYTHONPATH"])
    env.pop("PYTHONSTARTUP", None)
    env.update(PYTHONPATH=os.pathsep.join(path), PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8",
               PYTHONUNBUFFERED="1")
    env[PROTOCOL] = "jsonl"
    return env


def command(module: str, args: list[str]) -> list[str]:
    """``python -m softcon_qgis.core.<module> ARGS`` (``module``: ``embed``, ``classify``, ``models``)."""
    return [deps.python_executable(), "-m", f"{__package__}.core.{module}", *map(str, args)]


def shell_line(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """The command as a user would type it (cmd.exe or a POSIX shell), with its PYTHONPATH."""
    if platform.system() == "Windows":
        line = subprocess.list2cmdline(cmd)
        return f"set PYTHONPATH={env['PYTHONPATH']} && {line}" if env else line
    line = shlex.join(cmd)
    return f"PYTHONPATH={shlex.quote(env['PYTHONPATH'])} {line}" if env else line


def _pump(stream, tag: str, lines: queue.Queue) -> None:
    for line in stream:
        lines.put((tag, line.rstrip("\r\n")))
    lines.put((tag, None))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (the worker cleans up and exits), then the kill after :data:`GRACE_S`."""
    proc.terminate()
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(module: str, args: list[str], progress: Progress, on_stderr: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None) -> dict:
    """Run ``python -m softcon_qgis.core.<module> ARGS`` and return its result (the protocol's ``result``).

    Progress and log lines go to ``progress`` (its cancel check is polled every 0.1 s), stderr lines to
    ``on_stderr``. Raises :class:`Cancelled` when cancelled (the worker is gone within :data:`GRACE_S`),
    :class:`WorkerError` when the worker reports an error, crashes or ends without a result.
    """
    cmd = command(module, args)
    try:
        # A fixed argument list (no shell): the interpreter QGIS runs, SoftCon's own module, and arguments
        # built from the dialog's parameters, one per list item.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # nosec B603
                                stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace", bufsize=1,
                                env=env if env is not None else environment(),
                                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except OSError as exc:
        raise WorkerError(f"Could not start the Python that runs SoftCon ({cmd[0]}): {exc}. Set the environment "
                          f"variable {deps.PYTHON_OVERRIDE} to a Python {platform.python_version()} "
                          f"interpreter.") from None
    lines: queue.Queue = queue.Queue()
    for stream, tag in ((proc.stdout, "out"), (proc.stderr, "err")):
        threading.Thread(target=_pump, args=(stream, tag, lines), daemon=True).start()
    tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
    result, error, open_streams = None, None, 2
    while open_streams:
        if progress.is_cancelled():
            _stop(proc)
            raise Cancelled("Cancelled by the user; no output was written.")
        try:
            tag, line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            open_streams -= 1
        elif tag == "err":
            tail.append(line)
            if on_stderr is not None and line.strip():
                on_stderr(line)
        else:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                progress.log(line)  # a library printing to stdout
            elif "progress" in message:
                progress.on_progress(float(message["progress"]), message.get("text") or "")
            elif "log" in message:
                progress.log(message["log"])
            elif "result" in message:
                result = message["result"]
            elif "error" in message:
                error = message["error"]
    code = proc.wait()
    if error is not None:
        raise WorkerError(error)
    if result is not None and code == 0:
        return result
    missing = next((ln for ln in reversed(tail) if ln.startswith(("ModuleNotFoundError", "ImportError"))), None)
    if missing is not None:
        raise MissingPackages(missing)
    raise WorkerError(crash_message(code, list(tail)))


def crash_message(code: int, tail: list[str]) -> str:
    """What a worker that ended without a result tells the user: how it ended, and its last stderr lines."""
    text = "\n".join(tail)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        why = {"SIGKILL": " (by the system when memory ran out, or by hand)",
               "SIGSEGV": " (a crash in a native library)"}.get(name, "")
        how = f"was killed by {name}{why}"
    elif code >= 0xC0000000:  # Windows: an access violation, a stack overflow...
        how = f"crashed (Windows status 0x{code:08X})"
    else:
        how = f"stopped with exit code {code} without a result"
    return (f"The SoftCon worker process {how}. QGIS is not affected, and no output was written."
            + (f"\nIts last messages:\n{text}" if text else ""))
