"""Where SoftCon keeps its files: one cache root for weights, sample data and embeddings (stdlib only)."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import SoftConError


def cache_dir() -> Path:
    """``$SOFTCON_CACHE`` or ``$XDG_CACHE_HOME/softcon`` (default ``~/.cache/softcon``); not created here:
    whoever writes into it creates what it needs (a read-only home must not stop a run that only reads)."""
    root = os.environ.get("SOFTCON_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "softcon"
    )
    return Path(root)


def cache_subdir(name: str) -> Path:
    """``cache_dir() / name``, created; a cache folder that cannot be written is one clear error."""
    path = cache_dir() / name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SoftConError(f"Cannot write to the cache folder {path} ({e.strerror or e}); set SOFTCON_CACHE to a "
                           f"writable folder.") from None
    return path
