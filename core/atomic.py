"""Write-to-temp-and-rename, so a failed or cancelled write never leaves a partial file behind."""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; rename it to ``path`` on success, remove it on error.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by extension
    (numpy's ``savez``, Pillow) behave as for the real name.
    """
    path = Path(path)
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
