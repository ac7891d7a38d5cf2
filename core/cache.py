"""Embedding cache: a user who adds training points and re-runs gets the new map in seconds.

Embedding rasters are kept under ``<cache_dir>/embeddings/<key>.tif``, where the key hashes each source
file's absolute path, size and modification time, the model, its weights file (path, size, mtime) and
every parameter that changes the embedding (mode, stride, bands, extent, precision). Editing a source
file or the weights therefore misses the cache; nothing else needs invalidating.

An entry is committed by its JSON side-car, written (atomically) only after the embedding raster was
written and verified; it records the raster's size and SHA-256. An entry without a readable side-car, of
another size or checksum (bytes damaged in place), or that fails the caller's check is dropped and computed
again, with one line saying so. A cache folder that cannot be written (a read-only home) means no cache,
with one note (:func:`unusable`).

The cache is bounded: after each new entry the least recently used entries are removed until the total
is under ``$SOFTCON_EMBED_CACHE_GB`` (default 5 GB). ``python -m core.cache info`` / ``clear``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .cli import add_debug, run_main
from .errors import SoftConError
from .io.atomic import atomic_path, clean_stale
from .models.weights import sha256sum
from .paths import cache_subdir

DEFAULT_LIMIT_GB = 5.0
#: Bump when the embedding engine changes what it writes for the same inputs.
ENGINE_VERSION = 5  # 2: border windows see the raster mirrored; 3: default dense stride 3/4 of a window;
#                     4: dense windows blended (core.embed.blend); 5: default dense stride half a window again


def cache_root() -> Path:
    """Folder of cached embedding rasters."""
    return cache_subdir("embeddings")


def unusable() -> str | None:
    """Why the cache folder cannot be used (cannot be created, or not writable; a sentence with the fix), or None."""
    try:
        root = cache_root()
    except SoftConError as e:
        return str(e)
    return None if os.access(root, os.W_OK) else (f"The cache folder {root} is not writable; set SOFTCON_CACHE to a "
                                                  f"writable folder.")


def limit_bytes() -> int:
    """Size limit from ``$SOFTCON_EMBED_CACHE_GB`` (default 5 GB)."""
    try:
        gb = float(os.environ.get("SOFTCON_EMBED_CACHE_GB", DEFAULT_LIMIT_GB))
    except ValueError:
        gb = DEFAULT_LIMIT_GB
    return int(gb * 1e9)


def file_fingerprint(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Absolute path, size and modification time (ns) of a file; None for None."""
    if path is None:
        return None
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(sources: str | os.PathLike | Sequence[str | os.PathLike], **params: Any) -> str:
    """Hex key of a source raster (or file list) and the parameters of its embedding."""
    files = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    doc = {"engine": ENGINE_VERSION, "sources": [file_fingerprint(f) for f in files], "params": params}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _entries(root: Path) -> list[Path]:
    return sorted(root.glob("*.tif"), key=lambda p: p.stat().st_mtime)


def _size(tif: Path) -> int:
    return sum(p.stat().st_size for p in (tif, tif.with_suffix(".json"), Path(str(tif) + ".aux.xml")) if p.exists())


def evict(limit: int | None = None, keep: Path | None = None, root: Path | None = None) -> list[Path]:
    """Remove least recently used entries until the cache holds at most ``limit`` bytes."""
    root = root or cache_root()
    limit = limit_bytes() if limit is None else limit
    entries = _entries(root)
    total = sum(_size(p) for p in entries)
    removed = []
    for p in entries:
        if total <= limit:
            break
        if keep is not None and p.resolve() == Path(keep).resolve():
            continue
        total -= _size(p)
        _remove_entry(p)
        removed.append(p)
    return removed


def _remove_entry(tif: Path) -> None:
    for p in (tif, tif.with_suffix(".json"), Path(str(tif) + ".aux.xml")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _unreadable(path: Path, validate: Callable[[Path], Any] | None) -> str | None:
    """Why the entry at ``path`` cannot be used, or None when it is complete."""
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except FileNotFoundError:
        return "no side-car (an interrupted write)"
    except (OSError, ValueError) as e:
        return f"its side-car does not parse: {e}"
    if not isinstance(meta, dict):
        return "its side-car is not a JSON object"
    if meta.get("bytes") is not None and meta["bytes"] != path.stat().st_size:
        return f"{path.stat().st_size} bytes instead of {meta['bytes']}"
    if meta.get("sha256") is not None and meta["sha256"] != sha256sum(path):
        return "its bytes changed since it was written (checksum mismatch)"
    if validate is not None:
        try:
            validate(path)
        except Exception as e:  # any failure to read it means: recompute
            return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def cached_embedding(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    params: dict[str, Any],
    compute: Callable[[Path], Any],
    enabled: bool = True,
    validate: Callable[[Path], Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """The cached embedding of ``sources`` with ``params``, computing it with ``compute(out_path)`` on a miss.

    Args:
        compute: writes the embedding raster to the path it is given (atomically, verified).
        enabled: False = bypass the cache (the result is still written there, then evicted by size).
        validate: raises when a cached raster cannot be read (checked on every hit).
        log: told, in one line, when an unreadable entry is dropped.

    Returns:
        (path of the embedding raster, True if it came from the cache).

    Raises:
        SoftConError: the side-car could not be written (a full disk); the entry is removed.
    """
    root = cache_root()
    clean_stale(root)
    key = cache_key(sources, **params)
    path = root / f"{key}.tif"
    if enabled and path.exists():
        why = _unreadable(path, validate)
        if why is None:
            now = time.time()
            os.utime(path, (now, now))  # least recently *used* is evicted first
            return path, True
        _remove_entry(path)
        (log or (lambda m: print(m, file=sys.stderr)))(
            f"The cached embedding {path.name} was unreadable ({why}); dropped it and computing it again.")
    compute(path)
    files = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    meta = {"sources": [str(Path(f).resolve()) for f in files], "params": params, "created": time.time(),
            "bytes": path.stat().st_size, "sha256": sha256sum(path)}
    try:
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=1, default=str))
    except (OSError, SoftConError) as e:
        _remove_entry(path)
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise SoftConError(f"Cannot write the embedding cache entry in {root} ({why}). Free some space "
                           f"on that disk, or run without the cache (--no-cache).") from None
    evict(keep=path, root=root)
    return path, False


def info() -> dict[str, Any]:
    """Where the cache is, how many entries, their total size and the limit."""
    root = cache_root()
    entries = _entries(root)
    return {"path": str(root), "entries": len(entries), "bytes": sum(_size(p) for p in entries),
            "limit_bytes": limit_bytes()}


def clear() -> int:
    """Remove every cached embedding; returns how many were removed."""
    entries = _entries(cache_root())
    for p in entries:
        _remove_entry(p)
    return len(entries)


def main(argv: list[str] | None = None) -> int:
    return run_main(_main, argv)


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m core.cache", description="Inspect or clear the embedding cache.")
    p.add_argument("cmd", choices=["info", "clear"])
    add_debug(p)
    args = p.parse_args(argv)
    if args.cmd == "info":
        d = info()
        print(f"{d['path']}: {d['entries']} embedding raster(s), {d['bytes'] / 1e6:.1f} MB "
              f"(limit {d['limit_bytes'] / 1e9:.1f} GB, set $SOFTCON_EMBED_CACHE_GB to change)")
    else:
        print(f"removed {clear()} cached embedding raster(s) from {cache_root()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
