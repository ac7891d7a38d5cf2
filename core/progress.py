"""One progress/cancel object shared by the command line (a tqdm bar) and the QGIS plugin.

``core`` only knows a callback and a cancel check, as dzetsaka does; the front ends adapt. The plugin runs the
command lines themselves in a child process, as QGIS's GRASS and SAGA providers do, and reads their progress
back as JSON lines (:data:`PROTOCOL`): one object per line on stdout,

    {"progress": 42.5, "text": "120 windows"}   {"log": "Model: galileo_nano_s2 ..."}
    {"result": {...}}  (the outputs, once, at the end)   {"error": "the one-line message"}

and cancels by SIGTERM, which :func:`cancel_on_sigterm` turns into :class:`Cancelled` (so every atomic write
cleans up as on Ctrl-C). This module stays stdlib-only: the plugin imports it inside QGIS.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import Cancelled

#: Environment variable the plugin sets for the command lines it runs: ``jsonl`` = the JSON-lines protocol.
PROTOCOL = "SOFTCON_PROGRESS"


@dataclass
class Progress:
    """Reports fractions in [0, 100] and answers whether the user asked to stop.

    Args:
        on_progress: called with a percentage (float) and an optional message.
        is_cancelled: returns True once the user asked to stop.
        on_log: called with informational text (model, bands, device...).
    """

    on_progress: Callable[[float, str], None] = lambda pct, msg="": None
    is_cancelled: Callable[[], bool] = lambda: False
    on_log: Callable[[str], None] = lambda msg: None
    _last: float = field(default=-1.0, repr=False)

    def update(self, done: float, total: float, message: str = "") -> None:
        """Report ``done`` of ``total`` (at most every 0.5 %); a value below the last one starts a new stage
        (embedding, cross-validation, classifying), which is reported from its start."""
        pct = 100.0 * done / max(total, 1e-12)
        if pct < self._last or pct - self._last >= 0.5 or done >= total:
            self._last = pct
            self.on_progress(min(pct, 100.0), message)

    def log(self, message: str) -> None:
        self.on_log(message)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user asked to stop (call once per batch)."""
        if self.is_cancelled():
            raise Cancelled("Cancelled by the user; no output was written.")


def tqdm_progress(desc: str = "") -> Progress:
    """A Progress that drives a tqdm bar on stderr (command-line use); each stage of a run (embedding,
    cross-validation, classifying) gets a bar of its own, whose rate and time left are the stage's."""
    from tqdm import tqdm  # command line only

    bars: list = []

    def on_progress(pct: float, msg: str = "") -> None:
        if not bars or bars[-1].disable or pct < bars[-1].n:  # the first stage, or a new one
            if bars and not bars[-1].disable:
                bars[-1].close()
            bars.append(tqdm(total=100.0, desc=desc, unit="%",
                             bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}% [{elapsed}<{remaining}{postfix}]"))
        bar = bars[-1]
        bar.n = pct
        if msg:
            bar.set_postfix_str(msg, refresh=False)
        bar.refresh()
        if pct >= 100.0:
            bar.close()

    return Progress(on_progress=on_progress, on_log=lambda m: tqdm.write(m))


def json_lines() -> bool:
    """Whether this process talks the plugin's JSON-lines protocol (``SOFTCON_PROGRESS=jsonl``)."""
    return os.environ.get(PROTOCOL) == "jsonl"


def emit(**message: Any) -> None:
    """One protocol line on stdout (flushed at once: the plugin reads it while the work goes on)."""
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def jsonl_progress() -> Progress:
    """A Progress that writes protocol lines: ``{"progress", "text"}`` and ``{"log"}``."""
    return Progress(on_progress=lambda pct, msg="": emit(progress=round(pct, 2), text=msg),
                    on_log=lambda msg: emit(log=msg))


def cli_progress(desc: str = "") -> Progress:
    """The command line's progress: JSON lines for the plugin, else a tqdm bar on stderr."""
    return jsonl_progress() if json_lines() else tqdm_progress(desc)


def emit_result(result: dict[str, Any]) -> None:
    """The command's result (output paths, class names...) as the protocol's last line; nothing otherwise."""
    if json_lines():
        emit(result=result)


def cancel_on_sigterm() -> None:
    """Turn the first SIGTERM (the plugin's Cancel, a job scheduler's stop) into :class:`Cancelled`, raised
    where the main thread is, so outputs are cleaned up as on Ctrl-C; a second one during clean-up is ignored."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Cancelled("Cancelled by the user; no output was written.")

    signal.signal(signal.SIGTERM, handler)


def last_line(line: str) -> None:
    """Print a command's final line (an error, "Interrupted") on stderr, below its progress bars; for the plugin,
    the protocol's ``{"error"}`` line.

    The bars are closed first: ``tqdm.write`` would draw them again after the line.
    """
    if json_lines():
        emit(error=line.removeprefix("error: "))
        return
    from tqdm import tqdm  # command line only

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(line, file=sys.stderr)
