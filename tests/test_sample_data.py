"""Unpacking the sample data safely on every Python the project meets, including Debian 12's 3.11.2 (the one
QGIS runs), whose ``tarfile`` has no ``filter=`` (added in 3.11.4)."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from core.errors import SoftConError
from core.io import sample_data

SYSTEM_PYTHON = Path("/usr/bin/python3")


def make_tar(path: Path, link: str | None = None, name: str = "pkg/data/a.txt") -> Path:
    with tarfile.open(path, "w:gz") as tf:
        data = b"hello"
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo("pkg/link")
            info.type = tarfile.SYMTYPE
            info.linkname = link
            tf.addfile(info)
    return path


def test_tar_is_unpacked_and_checked_without_the_data_filter(tmp_path, monkeypatch):
    """The fallback used where ``tarfile.data_filter`` is missing: files unpack, escapes and links are refused."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    sample_data._extract_tar(make_tar(tmp_path / "ok.tar.gz"), tmp_path / "ok")
    assert (tmp_path / "ok" / "pkg" / "data" / "a.txt").read_bytes() == b"hello"
    with pytest.raises(SoftConError, match="outside the target folder"):
        sample_data._extract_tar(make_tar(tmp_path / "up.tar.gz", name="../evil.txt"), tmp_path / "up")
    with pytest.raises(SoftConError, match="is a link or a device"):
        sample_data._extract_tar(make_tar(tmp_path / "ln.tar.gz", link="/etc/passwd"), tmp_path / "ln")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "ln").exists()


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs the system Python QGIS runs")
def test_tar_unpacks_with_the_python_qgis_runs(tmp_path, repo_root):
    """The real extraction code under the system Python (3.11.2 on Debian 12, no ``filter=``)."""
    archive = make_tar(tmp_path / "ok.tar.gz")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from core.io.sample_data import _extract_tar; "
            "_extract_tar(__import__('pathlib').Path(sys.argv[2]), sys.argv[3])")
    proc = subprocess.run([str(SYSTEM_PYTHON), "-I", "-c", code, str(repo_root), str(archive), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "pkg" / "data" / "a.txt").read_bytes() == b"hello"
