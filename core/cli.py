"""What every command line shares: ``--debug`` and the error funnel around ``main``.

``python -m core.classify|embed|models|cache``, ``train.pretrain``, ``train.linear_probe`` and ``train.pack``
all end through :func:`run_main`: exit 0, or one line (``error: ...``, :func:`core.errors.error_line`) and
exit 2, or ``Interrupted`` and exit 130 on Ctrl-C. A traceback is printed only with ``--debug`` (or
``SOFTCON_DEBUG=1``).
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Any, Callable, Sequence

from .errors import Cancelled, error_line
from .progress import last_line

DEBUG_FLAG = "--debug"


def add_debug(parser: Any) -> None:
    """List ``--debug`` in a parser's help (:func:`run_main` takes it out of argv before parsing)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="on an error, also print the Python traceback")


def split_debug(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """(argv without ``--debug``, whether it or ``SOFTCON_DEBUG`` asked for tracebacks)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("SOFTCON_DEBUG", "") not in ("", "0")
    return [a for a in argv if a != DEBUG_FLAG], debug


def run_main(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """Run ``main(argv)`` and turn whatever it raises into an exit code and one line on stderr.

    Returns:
        ``main``'s own exit code (0 for None or a non-int result), 2 after an error, 130 after Ctrl-C or a
        cancel. ``SystemExit`` (argparse's usage errors, ``--help``) passes through.
    """
    argv, debug = split_debug(argv)
    try:
        rc = main(argv)
        return rc if isinstance(rc, int) else 0
    except SystemExit:
        raise
    except (KeyboardInterrupt, Cancelled) as e:
        if debug:
            traceback.print_exc()
        last_line("Interrupted; no output was written." if isinstance(e, KeyboardInterrupt) else str(e))
        return 130
    except BaseException as e:  # noqa: BLE001 - the funnel: every failure becomes one line
        if debug:
            traceback.print_exc()
        last_line(f"error: {error_line(e)}")
        return 2
