"""One exception type for user-facing problems, so the CLI and the plugin can show them plainly."""
from __future__ import annotations






class SoftConError(Exception):
    """A problem with the user's input or set-up. The message says what is wrong and how to fix it."""


class Cancelled(SoftConError):
    """The user cancelled a long job; any partial output has been removed."""
