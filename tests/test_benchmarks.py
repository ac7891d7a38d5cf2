"""Every benchmark runs at its smoke size and prints valid JSON, so none can rot unnoticed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.io.sample_data import s2_scene_files
from core.paths import cache_dir

BENCHMARKS = {
    "assess.py": ["--smoke", "--out-dir", "{tmp}"],
    "qgis_worker.py": ["--smoke"],
    "encoders.py": ["--smoke"],
    "inference.py": ["--smoke", "--pretrained"],  # the default model's own 10 bands picked from the 13-band scene
    "classify.py": ["--smoke"],
    "map_quality.py": ["--smoke"],
    "train.py": ["--smoke"],
    "soft_term.py": ["share", "--smoke"],
}


def test_every_benchmark_has_a_smoke_run(repo_root):
    assert sorted(p.name for p in (repo_root / "benchmarks").glob("*.py")) == sorted(BENCHMARKS)


@pytest.fixture(scope="module")
def bench_cache(tmp_path_factory) -> Path:
    """A cache of its own (embeddings, weights) that shares the fetched sample data with the user's cache."""
    s2_scene_files()  # fetched once into the real cache
    root = tmp_path_factory.mktemp("cache")
    for shared in ("data", "demo"):  # sample data, and the demo scene stacked to 10 m (made once)
        if (cache_dir() / shared).is_dir():
            (root / shared).symlink_to(cache_dir() / shared, target_is_directory=True)
    return root


@pytest.mark.parametrize("script", sorted(BENCHMARKS))
def test_benchmark_smoke_run_prints_json(repo_root, bench_cache, script):
    env = dict(os.environ, SOFTCON_CACHE=str(bench_cache), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    args = [a.format(tmp=bench_cache / "work") for a in BENCHMARKS[script]]
    proc = subprocess.run([sys.executable, str(repo_root / "benchmarks" / script), *args],
                          capture_output=True, text=True, cwd=repo_root, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert isinstance(result, dict) and result, proc.stdout[-2000:]
