"""Where SoftCon keeps its files: one cache root for weights, sample data and embeddings (stdlib only)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$SOFTCON_CACHE`` or ``$XDG_CACHE_HOME/softcon`` (default ``~/.cache/softcon``), created."""
    root = os.environ.get("SOFTCON_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "softcon"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
