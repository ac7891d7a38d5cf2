"""Write-to-temp-and-rename, so a failed or cancelled write never leaves a partial file behind.

Temporary names are hidden and carry the writing process's id (``.map.tif.<pid>.<hex>.tmp.tif``):
a run that was killed (kill -9, a power cut) cannot remove its own, so the next write into the same
folder removes those of processes that no longer run (:func:`clean_stale`).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..errors import SoftConError

#: ``.<name>.<pid>.<8 hex>.tmp[.<suffix>]`` plus GDAL's side-car files; ``.softcon-<pid>-<8 hex>`` stage folders.
_TEMP = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?(\.aux\.xml|\.msk)?$")
_STAGE = re.compile(r"^\.softcon-(\d+)-[0-9a-f]{8}$")


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden temporary path beside ``path`` that keeps its suffix (writers pick formats by extension)."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"


def stage_dir(folder: str | os.PathLike) -> Path:
    """A hidden folder name inside ``folder`` for outputs that are moved into place together."""
    return Path(folder) / f".softcon-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove this tool's temporary files and stage folders in ``folder`` whose process no longer runs.

    Returns the removed paths. Never raises: cleaning is a courtesy, not part of the job.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP.match(e.name) or _STAGE.match(e.name)
        if m is None or _alive(int(m.group(1))):
            continue
        p = Path(e.path)
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; rename it to ``path`` on success, remove it on error.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by extension
    (numpy's ``savez``, Pillow) behave as for the real name. Stale temporary files of killed runs in
    the same folder are removed first.
    """
    path = Path(path)
    clean_stale(path.parent)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SoftConError(f"The disk holding {path.parent} is full; {path.name} was not written. "
                               f"Free some space or choose another output folder.") from None
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise SoftConError(f"Cannot write {path} ({e.strerror}); choose a writable output folder.") from None
        raise



def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")  # plain open(): the user's umask applies
    return path
