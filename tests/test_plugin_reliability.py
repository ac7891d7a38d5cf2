"""Algorithms run as the Processing dialog runs them: in a ``QgsProcessingAlgRunnerTask`` on a thread that
QGIS (not Python) created, twice in one QGIS process and two at once. pyproj 3.7 crashed QGIS (SIGSEGV)
on the second run there, so the runs happen in a child process: a crash fails this test instead of
killing the test session."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.qgis

SCRIPT = textwrap.dedent('''
    import faulthandler, os, sys, time
    faulthandler.enable()
    sys.path[:0] = [{root!r}, {tests!r}]
    os.environ["SOFTCON_CACHE"] = {cache!r}
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback
    app = QgsApplication([], False)
    app.initQgis()
    import qgis_helpers as helpers
    from core.embed.engine import embed_raster
    from core.embed.spec import EmbedSpec
    from core.models.encoders import create_encoder

    plugin = helpers.load_provider()
    out = {out!r}
    emb = embed_raster(helpers.scene_crop(), os.path.join(out, "emb.tif"),
                       EmbedSpec(mode="dense", device="cpu",
                                 precision="fp32"), encoder=create_encoder(pretrained=False))

    def start(name):
        alg = QgsApplication.processingRegistry().createAlgorithmById("softcon:classify")
        params = dict(INPUT=str(emb), TRAINING=str(helpers.demo_points()), CLASS_FIELD="class", METHOD="knn", K=5,
                      MODE="dense", DEVICE="cpu", OUTPUT_CLASSES=os.path.join(out, name + ".tif"))
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
        done = {{}}
        task.executed.connect(lambda ok, results: done.update(ok=ok))
        QgsApplication.taskManager().addTask(task)
        return task, done, context, feedback

    for batch in (["first"], ["second"], ["third_a", "third_b"]):  # one, again, then two at once
        runs = [start(name) for name in batch]
        t0 = time.time()
        while not all("ok" in r[1] for r in runs) and time.time() - t0 < 300:
            app.processEvents()
            time.sleep(0.02)
        print(batch, [r[1].get("ok") for r in runs], flush=True)
    helpers.drop_layers()
    plugin.unload()
''')


def test_classify_twice_and_two_at_once_in_task_threads(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "runs.py"
    script.write_text(SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), cache=str(tmp_path / "cache"),
                                    out=str(out)))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    log = proc.stdout + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "['first'] [True]" in proc.stdout and "['second'] [True]" in proc.stdout, log
    assert "['third_a', 'third_b'] [True, True]" in proc.stdout, log
    assert {p.name for p in out.glob("*.tif")} >= {"first.tif", "second.tif", "third_a.tif", "third_b.tif"}


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    import qgis_helpers as helpers

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache-reliability"))
        plugin = helpers.load_provider()
        yield plugin
        helpers.drop_layers()
        plugin.unload()


def test_truncated_geotiff_in_the_plugin_is_one_message(plugin, tmp_path):
    import qgis_helpers as helpers
    from rasterio.shutil import copy

    full = tmp_path / "full.tif"
    copy(helpers.scene_crop(), full, driver="COG", blocksize=128)  # header first: QGIS opens it, reading fails
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    (out / ".softcon-999999-0123abcd").mkdir()  # the staging folder of a QGIS killed mid-run
    params = {"INPUT": str(cut), "CHECKPOINT": str(helpers.random_checkpoint()), "DEVICE": "cpu",
              "OUTPUT": str(out / "emb.tif")}
    ok, _, fb = helpers.run("softcon:embed", params)
    message = "\n".join(fb.errors)
    assert not ok and "truncated or corrupt" in message and "Traceback" not in message, message
    assert list(out.iterdir()) == []


def test_output_under_a_read_only_parent_in_the_plugin_is_one_message(plugin, tmp_path, monkeypatch):
    import qgis_helpers as helpers

    mkdir = Path.mkdir

    def refuse(self, *a, **k):  # as under a read-only parent (root may write anywhere here)
        if tmp_path in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refuse)
    params = {"INPUT": str(helpers.scene_crop()), "CHECKPOINT": str(helpers.random_checkpoint()), "DEVICE": "cpu",
              "OUTPUT": str(tmp_path / "new" / "emb.tif")}
    ok, _, fb = helpers.run("softcon:embed", params)
    message = "\n".join(fb.errors)
    assert not ok and "Cannot create the output folder" in message and "Traceback" not in message, message
