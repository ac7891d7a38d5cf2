"""Where weights files live, and fetching them (TorchGeo ``Weights`` / timm ``pretrained_cfg`` style).

Order of lookup in :func:`weights_path`: the record's ``local_path`` (weights shipped with the
project), the cache folder ``<cache>/weights/<filename>``, then a download: through
``huggingface_hub.hf_hub_download`` (resumable, tqdm progress) when the record names a hub repo,
else plain HTTPS with HTTP Range resume. ``<cache>`` is ``$SOFTCON_CACHE`` or
``$XDG_CACHE_HOME/softcon`` (``~/.cache/softcon``), the root of :func:`core.paths.cache_dir`.

With ``HF_HUB_OFFLINE=1`` (or ``SOFTCON_OFFLINE=1``), or when the network is unreachable, a
:class:`~core.errors.SoftConError` gives the URL and the exact file path to put the file at by hand.
A sha256 in the record is checked after download and whenever the file is used.
"""
from __future__ import annotations

import functools
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import Cancelled, SoftConError
from ..paths import cache_dir
from ..progress import Progress
from .record import ModelRecord

_TRUTHY = {"1", "true", "yes", "on"}


def weights_dir() -> Path:
    """``<cache>/weights``: downloaded weights, one file per record ``filename``."""
    path = cache_dir() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``SOFTCON_OFFLINE`` is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in _TRUTHY for v in ("HF_HUB_OFFLINE", "SOFTCON_OFFLINE"))


def download_url(record: ModelRecord) -> str | None:
    """The URL a record's file is fetched from (hub ``resolve/main`` URL or ``record.url``)."""
    if record.url:
        return record.url
    if record.hf_repo and record.filename:
        return f"https://huggingface.co/{record.hf_repo}/resolve/main/{record.filename}"
    return None


def cached_path(record: ModelRecord) -> Path | None:
    """The local file for ``record`` if there is one (``local_path`` or the cache), else None."""
    if record.local_path and Path(record.local_path).is_file():
        return Path(record.local_path)
    if record.filename:
        path = cache_dir() / "weights" / record.filename
        if path.is_file():
            return path
    return None


def sha256sum(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256sum(path)


def verify_sha256(path: str | Path, expected: str | None) -> None:
    """Raise a SoftConError naming expected and actual digests when they differ (None: no check)."""
    if not expected:
        return
    st = Path(path).stat()
    actual = _sha256_cached(str(path), st.st_size, st.st_mtime_ns)
    if actual.lower() != expected.lower():
        raise SoftConError(
            f"The weights file {path} is damaged or not the published one: sha256 {actual}, "
            f"expected {expected}. Delete the file and run again to download it afresh."
        )


def _manual_hint(record: ModelRecord) -> str:
    url = download_url(record)
    target = weights_dir() / (record.filename or f"{record.name}.safetensors")
    where = f"Download {url} by hand" if url else "Obtain the file"
    return f"{where} and save it as {target} (folder {target.parent}, file name {target.name})."


class _ProgressTqdm:  # built lazily so tqdm is imported only when a download happens
    @staticmethod
    def make(progress: Progress, label: str):
        from tqdm.auto import tqdm  # only when a download happens

        class ProgressTqdm(tqdm):
            def update(self, n=1):  # noqa: D401 - tqdm API
                out = super().update(n)
                if self.total:
                    progress.update(self.n, self.total, label)
                progress.check()
                return out

        return ProgressTqdm


def _download_hf(record: ModelRecord, progress: Progress | None) -> Path:
    from huggingface_hub import hf_hub_download  # only when a download happens
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled  # (as above)

    kw = {}
    if progress is not None:
        kw["tqdm_class"] = _ProgressTqdm.make(progress, f"downloading {record.filename}")
    try:
        # local_dir keeps the plain layout <cache>/weights/<filename>; partial downloads resume.
        # The revision comes from the record ("main" unless pinned); record.sha256 pins content.
        return Path(hf_hub_download(record.hf_repo, record.filename, revision=record.revision or "main",
                                    local_dir=weights_dir(), **kw))
    except Cancelled:
        raise
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise SoftConError(f"Cannot download the weights of {record.name} ({exc.__class__.__name__}). "
                           + _manual_hint(record)) from None
    except (HfHubHTTPError, OSError) as exc:
        raise SoftConError(f"Downloading the weights of {record.name} failed ({str(exc).splitlines()[0][:200]}). "
                           + _manual_hint(record)) from None


def _download_https(record: ModelRecord, url: str, progress: Progress | None) -> Path:
    target = weights_dir() / (record.filename or Path(url).name)
    part = target.with_name(target.name + ".incomplete")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        # the URL comes from the model registry (https), not from user input
        with urllib.request.urlopen(req, timeout=30) as resp:  # nosec B310
            if have and resp.status != 206:  # server ignored the Range: start over
                have = 0
            total = have + int(resp.headers.get("Content-Length") or 0)
            with open(part, "ab" if have else "wb") as fh:
                done = have
                while True:
                    block = resp.read(1 << 20)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    if progress is not None:
                        progress.update(done, max(total, done), f"downloading {target.name}")
                        progress.check()
    except (urllib.error.URLError, OSError) as exc:
        raise SoftConError(f"Downloading the weights of {record.name} failed ({exc}). Run again to resume, or: "
                           + _manual_hint(record)) from None
    os.replace(part, target)
    return target


def weights_path(record: ModelRecord, progress: Progress | None = None) -> Path:
    """A verified local file with ``record``'s weights, downloading it if needed.

    Raises:
        SoftConError: no file and offline / unreachable (says where to put the file by hand),
            no source known, or sha256 mismatch (says to delete the file).
    """
    path = cached_path(record)
    if path is not None:
        verify_sha256(path, record.sha256)
        return path
    url = download_url(record)
    if url is None:
        where = record.local_path or str(weights_dir() / (record.filename or record.name))
        raise SoftConError(
            f"No weights file for {record.name}: it is not shipped yet and has no download URL. "
            f"Put the file at {where}, or pass a checkpoint file explicitly (--checkpoint)."
        )
    if is_offline():
        raise SoftConError(f"The weights of {record.name} are not in the cache and downloads are off "
                           f"(HF_HUB_OFFLINE/SOFTCON_OFFLINE). " + _manual_hint(record))
    if record.hf_repo and record.filename:
        path = _download_hf(record, progress)
    else:
        path = _download_https(record, url, progress)
    verify_sha256(path, record.sha256)
    return path


def weights_id(record: ModelRecord, pretrained: bool, checkpoint: str | Path | None = None) -> str:
    """Which weights an encoder runs with, as a short id stored with embeddings and classifiers:
    ``sha256:<first 16 hex>`` of the checkpoint or of the cached pretrained file, ``random-init``, or
    ``unknown`` when the pretrained file is not present yet (it is fetched later by the encoder)."""
    if checkpoint is not None:
        path = Path(checkpoint)
    elif not pretrained:
        return "random-init"
    else:
        path = cached_path(record)
        if path is None:
            return f"sha256:{record.sha256[:16]}" if record.sha256 else "unknown"
    st = path.stat()
    return "sha256:" + _sha256_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)[:16]
