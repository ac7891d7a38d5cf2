"""One progress/cancel object shared by the CLI (tqdm) and the plugin (QgsProcessingFeedback).

``core`` only knows a callback and a cancel check, as dzetsaka does; the front ends adapt.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

from .errors import Cancelled


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


def last_line(line: str) -> None:
    """Print a command's final line (an error, "Interrupted") on stderr, below its progress bars.

    The bars are closed first: ``tqdm.write`` would draw them again after the line.
    """
    from tqdm import tqdm  # command line only

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(line, file=sys.stderr)
