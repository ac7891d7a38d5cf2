"""QGIS's 'Compute embeddings' against the command line it runs: ``qgis_process run softcon:embed`` vs.
``python -m core.embed`` on the same 640 px crop of the demo scene, alternately, with no BLAS or OpenMP
variables set (the plugin's worker runs in its own process, away from QGIS's OpenBLAS: it was 42x slower
in QGIS's process). Also QGIS's start-up with and without the plugin: ``qgis_process list``, and with
``--desktop`` the QGIS desktop under Xvfb (from launch until a ``--code`` script runs, i.e. QGIS is up with its
plugins loaded). Prints JSON.

    .venv/bin/python benchmarks/qgis_worker.py [--size 640] [--repeats 3] [--desktop]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project before benchmarks/ (its train.py)

import qgis_helpers as helpers  # noqa: E402  (the test helpers run qgis_process with a throw-away profile)
from conftest import write_scene_crop  # noqa: E402
from core.io.sample_data import s2_scene_files  # noqa: E402

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS",
               "OPENBLAS_MAIN_FREE", "OMP_WAIT_POLICY")


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t


#: The desktop's start-up script: note the time, quit (QGIS runs it with no ``__file__``: the path is in the env).
QUIT = "import os, time, pathlib\npathlib.Path(os.environ['SOFTCON_UP']).write_text(repr(time.time()))\n" \
       "from qgis.PyQt.QtCore import QTimer\nfrom qgis.PyQt.QtWidgets import QApplication\n" \
       "QTimer.singleShot(0, QApplication.instance().quit)\n"


#: What the plugin itself costs at start-up, timed inside QGIS: classFactory, the provider and the dependency check.
PLUGIN_LOAD = """
import sys, time
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")
from processing.core.Processing import Processing
Processing.initialize()
t, c = time.perf_counter(), time.process_time()
import softcon_qgis
plugin = softcon_qgis.classFactory(None)
plugin.initProcessing()
softcon_qgis.deps.problem()
heavy = [m for m in ("torch", "rasterio", "sklearn") if m in sys.modules]
print(time.perf_counter() - t, time.process_time() - c, heavy)
"""


def plugin_load() -> tuple[float, float, list[str]]:
    """(wall s, CPU s, heavy modules imported) of loading the plugin in a QGIS that is already up."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PLUGIN_LOAD], capture_output=True, text=True, env=env, timeout=300)
    wall, cpu, heavy = out.stdout.strip().splitlines()[-1].split(" ", 2)
    return float(wall), float(cpu), heavy


def desktop_start(profile: Path, plugins: Path | None, tmp: Path) -> float:
    """Seconds from launching the QGIS desktop (Xvfb) to its start-up script running."""
    script = tmp / "quit.py"
    script.write_text(QUIT)
    up = script.with_suffix(".up")
    up.unlink(missing_ok=True)
    env = {k: v for k, v in helpers.qgis_env(profile, plugins).items() if k not in THREAD_VARS + ("QT_QPA_PLATFORM",)}
    env["SOFTCON_UP"] = str(up)
    t = time.time()
    subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--profiles-path", str(profile),
                    "--nologo", "--noversioncheck", "--code", str(script)], env=env, capture_output=True, timeout=300)
    return float(up.read_text()) - t


def main() -> None:
    med = statistics.median
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--desktop", action="store_true", help="also the desktop's start-up under Xvfb")
    p.add_argument("--startup-only", action="store_true", help="only the start-up times (no embedding runs)")
    p.add_argument("--smoke", action="store_true", help="a quick run (128 px, once) that checks the script works")
    args = p.parse_args()
    if args.smoke:
        args.size, args.repeats = 128, 1

    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    with tempfile.TemporaryDirectory(prefix="softcon-bench-") as tmp:
        tmp = Path(tmp)
        crop = write_scene_crop(s2_scene_files(), tmp / "crop.tif", args.size)
        profile, plugins = tmp / "profile", helpers.repo_plugin_path(tmp)
        helpers.enable_plugin(profile)
        qgis_env = helpers.qgis_env(profile, plugins, SOFTCON_PYTHON=sys.executable,
                                    SOFTCON_CACHE=str(tmp / "cache"))
        qgis_env = {k: v for k, v in qgis_env.items() if k not in THREAD_VARS}
        cli_env = dict(base, SOFTCON_CACHE=str(tmp / "cache"))
        common = ["--mode", "dense", "--device", "cpu"]
        cli = [sys.executable, "-m", "core.embed", str(crop), "--out", str(tmp / "cli.tif")] + common
        qgis = [str(helpers.QGIS_PROCESS), "run", "softcon:embed", "--", f"INPUT={crop}", "MODE=dense", "DEVICE=cpu",
                f"OUTPUT={tmp / 'qgis.tif'}"]
        load = [os.getloadavg()[0]]
        cli_s, qgis_s = [], []
        if not args.startup_only:
            timed(cli, cli_env, ROOT)  # warm the file cache and the weights
        for _ in range(0 if args.startup_only else args.repeats):
            cli_s.append(timed(cli, cli_env, ROOT))
            qgis_s.append(timed(qgis, qgis_env, tmp))
            load.append(os.getloadavg()[0])
        # QGIS start-up: qgis_process lists the algorithms with and without the plugin enabled
        bare = tmp / "bare"
        start_with, start_without = [], []
        for _ in range(args.repeats):
            start_with.append(timed([str(helpers.QGIS_PROCESS), "list"], qgis_env, tmp))
            start_without.append(timed([str(helpers.QGIS_PROCESS), "list"],
                                       helpers.qgis_env(bare, None, SOFTCON_PYTHON=sys.executable), tmp))
        loads = [plugin_load() for _ in range(args.repeats)]
        desktop = {"plugin_load_wall_s": round(med([w for w, _, _ in loads]), 3),
                   "plugin_load_cpu_s": round(med([c for _, c, _ in loads]), 3), "heavy_modules_in_qgis": loads[0][2]}
        if args.desktop:  # a fresh profile each: with the plugin enabled (it finds no packages), and without it
            desktop_start(bare, None, tmp)  # warm the file cache
            runs = [(desktop_start(bare, None, tmp), desktop_start(profile, plugins, tmp)) for _ in range(args.repeats)]
            desktop |= {"desktop_start_without_s": [round(a, 2) for a, _ in runs],
                        "desktop_start_with_s": [round(b, 2) for _, b in runs],
                        "desktop_added_s": round(med([b - a for a, b in runs]), 3)}
    print(json.dumps({
        "size_px": args.size, "repeats": args.repeats,
        "cli_s": [round(v, 2) for v in cli_s], "qgis_process_s": [round(v, 2) for v in qgis_s],
        "qgis_over_cli": round(med(qgis_s) / med(cli_s), 3) if cli_s else None,
        "startup_with_plugin_s": round(med(start_with), 3), "startup_without_plugin_s": round(med(start_without), 3),
        "startup_added_s": round(med(start_with) - med(start_without), 3),
        **desktop, "loadavg_1min": [round(v, 2) for v in load] + [round(os.getloadavg()[0], 2)],
    }, indent=1))


if __name__ == "__main__":
    main()
