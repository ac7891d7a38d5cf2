"""The checks the QGIS plugin repository runs on an uploaded zip: Bandit clean (justified ``# nosec`` only on
the pip call and the worker process), no pickle, Qt only through ``qgis.PyQt``, flake8-qgis clean. Plus the plugin's own
rules: thin (no torch/numpy/rasterio at module level, so QGIS starts fast and a missing package is
explained, not a traceback)."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import qgis_helpers as helpers

BIN = Path(sys.executable).parent
HEAVY = {"torch", "timm", "numpy", "rasterio", "sklearn", "shapely", "pyproj", "safetensors", "huggingface_hub"}


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """The built zip, unpacked: the exact files the repository's scanner sees."""
    out = tmp_path_factory.mktemp("lint")
    subprocess.run([sys.executable, str(helpers.ROOT / "scripts" / "build_plugin_zip.py"), "--out-dir", str(out)],
                   check=True, capture_output=True, timeout=120)
    with zipfile.ZipFile(next(out.glob("*.zip"))) as zf:
        zf.extractall(out / "unpacked")
    return out / "unpacked" / "softcon_qgis"


def bandit(path: Path, *exclude: Path) -> dict:
    args = [str(BIN / "bandit"), "-r", str(path), "-f", "json", "-q"]
    if exclude:
        args += ["-x", ",".join(str(e) for e in exclude)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout)


def issues(report: dict) -> list[str]:
    return [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]]


def test_bandit_clean_plugin_shell(unpacked):
    """The plugin's own code: no finding, and ``# nosec`` only on the pip call (install.py) and the worker
    process (worker.py)."""
    report = bandit(unpacked, unpacked / "core")
    assert issues(report) == []
    nosec = [(p.relative_to(unpacked).as_posix(), i + 1, line.strip())
             for p in unpacked.rglob("*.py") if "core" not in p.relative_to(unpacked).parts
             for i, line in enumerate(p.read_text().splitlines()) if "nosec" in line]
    assert sorted((f, re.findall(r"nosec (B\d+)", text)) for f, _, text in nosec) == \
        [("install.py", ["B404"]), ("install.py", ["B603"]), ("worker.py", ["B404"]), ("worker.py", ["B603"])], nosec
    for f, n, _ in nosec:  # each is justified in the comment just above it, which names what runs
        above = " ".join((unpacked / f).read_text().splitlines()[max(0, n - 4):n - 1]).lower()
        assert ("pip" in above or "softcon" in above) and "#" in above, (f, n)


def test_bandit_clean_bundled_core(unpacked):
    """core ships inside the zip, so the scanner reads it too. Typical fixes: ``html.escape`` instead of
    ``xml.sax.saxutils.escape`` (B406); check zip member names before ``extractall`` (B202); a justified
    ``# nosec`` on the one pip subprocess (B404/B603); a non-literal ``revision=`` for hub downloads (B615)."""
    assert issues(bandit(unpacked / "core")) == []


def test_no_pickle_anywhere(unpacked):
    """The repository rejects ``import pickle``. torch.load(weights_only=True) still reads .pth files; its
    error type is reachable as ``torch.serialization.pickle.UnpicklingError`` without importing pickle."""
    offenders = []
    for path in unpacked.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib") for n in names):
                offenders.append(f"{path.relative_to(unpacked)}:{node.lineno}")
    assert offenders == []


def test_flake8_qgis_clean(unpacked):
    """flake8-qgis over the whole zip; full flake8 (pyflakes, pycodestyle) over the plugin's own code."""
    proc = subprocess.run([str(BIN / "flake8"), "--select=QGS", str(unpacked)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout
    proc = subprocess.run([str(BIN / "flake8"), "--max-line-length=120", f"--exclude={unpacked / 'core'}",
                           str(unpacked)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


def test_qt_only_through_qgis_pyqt(unpacked):
    bad = [f"{p.relative_to(unpacked)}:{n + 1}" for p in unpacked.rglob("*.py")
           for n, line in enumerate(p.read_text().splitlines())
           if re.match(r"\s*(from|import)\s+(PyQt[456]|PySide\d?|sip)\b", line)]
    assert bad == []


def test_plugin_shell_is_thin():
    """No heavy import at module level in softcon_qgis (outside core), and importing every module of the
    shell in a fresh interpreter loads neither torch nor numpy."""
    shell = [p for p in (helpers.ROOT / "softcon_qgis").rglob("*.py")
             if "core" not in p.relative_to(helpers.ROOT).parts]
    for path in shell:
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            assert not HEAVY & {n.split(".")[0] for n in names}, f"{path.name}:{node.lineno} imports {names}"
    code = ("import sys, importlib\n"
            "for m in ('softcon_qgis', 'softcon_qgis.plugin', 'softcon_qgis.provider', 'softcon_qgis.styles',\n"
            "          'softcon_qgis.deps', 'softcon_qgis.install', 'softcon_qgis.worker', 'softcon_qgis.algorithms'):\n"
            "    importlib.import_module(m)\n"
            "print(sorted(m for m in ('torch', 'numpy', 'rasterio', 'timm') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=helpers.qgis_env(helpers.shared_dir() / "thin-profile"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
