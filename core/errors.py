"""One exception type for user-facing problems, and the one function that turns any exception into one line.

Every command line (:func:`core.cli.run_main`) and the plugin's worker report a failure as
:func:`error_line`: a :class:`SoftConError`'s own message (it names the fix); the failures of the machine
itself (memory, a full or read-only disk, permissions) in words, with what to change; anything else is a bug,
said as such, with ``--debug`` as the way to see the traceback.
"""
from __future__ import annotations

import errno
import re


class SoftConError(Exception):
    """A problem with the user's input or set-up. The message says what is wrong and how to fix it."""


class Cancelled(SoftConError):
    """The user cancelled a long job; any partial output has been removed."""


#: What to change when memory runs out, in every command's words.
MEMORY_FIX = ("use a smaller extent (--bbox), map on the embedding grid (--grid embedding), a smaller "
              "--batch-size, or free memory (close other programs; raise ulimit -v)")

_OS_ERRORS = {
    errno.ENOSPC: "the disk is full{where}; free some space or write to another disk",
    errno.EDQUOT: "the disk quota is exceeded{where}; free some space or write to another disk",
    errno.EROFS: "the file system is read-only{where}; choose a writable folder",
    errno.EACCES: "permission denied{where}; choose a folder you may write to, or fix its permissions",
    errno.EPERM: "operation not permitted{where}; choose a folder you may write to, or fix its permissions",
    errno.ENOENT: "not found{where}; check the path",
    errno.ENOMEM: "out of memory; " + MEMORY_FIX,
}


def _worker_message(text: str) -> str:
    """The original message of an exception re-raised from a torch DataLoader worker (its text holds the
    worker's traceback: "Caught X in DataLoader worker process 0. Original Traceback ... pkg.X: message")."""
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return re.sub(r"^[\w.]+(Error|Exception|Cancelled)?: ", "", last.strip())


def error_line(exc: BaseException) -> str:
    """The one line a user sees for ``exc`` (without the ``error:`` prefix).

    ``SoftConError``: its message. ``MemoryError`` and ``OSError`` (disk full, read-only, permissions):
    what failed and what to change. Anything else is a bug of this tool, and the line says so.
    """
    text = _worker_message(str(exc)).strip()
    if isinstance(exc, SoftConError):
        return " ".join(text.split()) or type(exc).__name__
    if isinstance(exc, MemoryError):  # numpy's _ArrayMemoryError included
        return f"Out of memory ({text or 'no detail'}); {MEMORY_FIX}."
    if isinstance(exc, OSError) and exc.errno in _OS_ERRORS:
        where = f" ({exc.filename})" if exc.filename else ""
        msg = _OS_ERRORS[exc.errno].format(where=where)
        return msg[0].upper() + msg[1:] + "."
    first = " ".join(text.split())[:300]
    return (f"internal error (a bug in this tool, not in your input): {type(exc).__name__}: {first or 'no detail'}. "
            f"Run the same command with --debug to see the traceback, and report it.")
