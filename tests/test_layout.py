"""core and train must stay free of QGIS and Qt, so they run headless on GPU servers."""
import json
import subprocess
import sys


def test_core_and_train_never_import_qgis(repo_root):
    code = (
        "import sys, json, importlib, pkgutil\n"
        "import core, train\n"
        "for pkg in (core, train):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if m.name.endswith('__main__'): continue\n"
        "        importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('qgis', 'PyQt5', 'PyQt6', 'sip'))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
