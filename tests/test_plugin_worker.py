"""The worker process behind every algorithm, run as the Processing dialog runs it: a
``QgsProcessingAlgRunnerTask`` on a thread QGIS created. Its result, Cancel (the worker gone within 2 s,
nothing written), a worker killed with SIGKILL mid-run (a readable message, this process unharmed), and the
plugin's map equal to the command line's, bit for bit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext

import qgis_helpers as helpers

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin(qgis_processing):
    crop, checkpoint = helpers.scene_crop(), helpers.random_checkpoint()  # before the cache is redirected
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOFTCON_CACHE", str(helpers.shared_dir() / "cache"))
        plugin = helpers.load_provider()
        yield {"crop": crop, "checkpoint": checkpoint}
        helpers.drop_layers()
        plugin.unload()


def in_task(alg_id: str, params: dict, during=None, timeout: float = 300):
    """Run an algorithm in a QgsProcessingAlgRunnerTask (as the dialog does); ``during(feedback)`` is called
    while it runs. Returns (done, feedback, seconds from the end of ``during``'s action to the task's end)."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context, feedback = QgsProcessingContext(), helpers.RecordingFeedback()
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    done: dict = {}
    task.executed.connect(lambda ok, results: done.update(ok=ok, results=results, t=time.monotonic()))
    QgsApplication.taskManager().addTask(task)
    acted = None
    t0 = time.monotonic()
    while "ok" not in done and time.monotonic() - t0 < timeout:
        QgsApplication.processEvents()
        if during is not None and acted is None and during(feedback):
            acted = time.monotonic()
        time.sleep(0.02)
    assert "ok" in done, "the task did not finish"
    return done, feedback, (done["t"] - acted) if acted is not None else None


def worker_pids(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (the run's own output path)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def embed_params(data, out: Path) -> dict:
    return {"INPUT": str(data["crop"]), "CHECKPOINT": str(data["checkpoint"]), "DEVICE": "cpu", "MODE": "dense",
            "OUTPUT": str(out)}


def test_embed_in_a_task_thread_runs_the_command_line(plugin, tmp_path):
    out = tmp_path / "emb.tif"
    done, fb, _ = in_task("softcon:embed", embed_params(plugin, out))
    assert done["ok"], fb.errors
    assert done["results"]["OUTPUT"] == str(out) and out.is_file()
    assert any("-m softcon_qgis.core.embed" in c and str(out) in c for c in fb.commands), fb.commands
    assert fb.progress_values and max(fb.progress_values) >= 99
    assert any("dense embeddings" in i for i in fb.infos), fb.infos  # core's log, through the protocol
    assert not worker_pids(str(out))


def test_cancel_stops_the_worker_within_two_seconds_and_writes_nothing(plugin, tmp_path):
    out = tmp_path / "out" / "emb.tif"

    def cancel_once_running(feedback):
        if any(0 < p < 90 for p in feedback.progress_values):
            feedback.cancel()
            return True
        return False

    done, fb, seconds = in_task("softcon:embed", embed_params(plugin, out), during=cancel_once_running)
    assert seconds is not None, "the run ended before it could be cancelled"
    assert not done["ok"] and seconds < 2.5, seconds
    assert not worker_pids(str(out))
    assert list(out.parent.iterdir()) == []  # not even a hidden temporary file


def test_a_worker_killed_mid_run_is_a_readable_error(plugin, tmp_path):
    out = tmp_path / "out" / "emb.tif"
    killed = []

    def kill_once_running(feedback):
        pids = worker_pids(str(out)) if any(0 < p < 90 for p in feedback.progress_values) else []
        for pid in pids:  # what the kernel's out-of-memory killer does
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        return bool(pids)

    done, fb, _ = in_task("softcon:embed", embed_params(plugin, out), during=kill_once_running)
    assert killed and not done["ok"]
    message = "\n".join(fb.errors)
    assert "killed by SIGKILL" in message and "QGIS is not affected" in message, message
    assert "Traceback" not in message
    assert not out.exists() and not [p for p in out.parent.iterdir() if not p.name.startswith(".")]
    # this process (QGIS) is alive and the next run works, cleaning the killed run's temporary file
    done, fb, _ = in_task("softcon:embed", embed_params(plugin, out))
    assert done["ok"], fb.errors
    assert [p.name for p in out.parent.iterdir()] == ["emb.tif"]


def test_the_plugin_map_is_the_command_line_map(plugin, tmp_path):
    """The same inputs through the dialog's task and through ``python -m core.classify``: identical maps."""
    params = {"INPUT": str(plugin["crop"]), "TRAINING": str(helpers.demo_points()), "CLASS_FIELD": "class",
              "METHOD": "rf", "FEATURES": "emb+pixel", "DEVICE": "cpu", "CV_FOLDS": 0,
              "OUTPUT_CLASSES": str(tmp_path / "qgis" / "classes.tif"), "OUTPUT_PROBABILITY": None,
              "OUTPUT_CONFIDENCE": None, "OUTPUT_REPORT": None}
    done, fb, _ = in_task("softcon:classify", params)
    assert done["ok"], fb.errors
    cmd = [sys.executable, "-m", "core.classify", str(plugin["crop"]), "--samples", str(helpers.demo_points()),
           "--label-field", "class", "--method", "rf", "--features", "emb+pixel", "--device", "cpu", "--cv-folds", "0",
           "--out-dir", str(tmp_path / "cli")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=helpers.ROOT,
                          env=dict(os.environ, SOFTCON_CACHE=str(tmp_path / "cli-cache")))  # computed afresh
    assert proc.returncode == 0, proc.stderr[-2000:]
    with rasterio.open(done["results"]["OUTPUT_CLASSES"]) as a, rasterio.open(tmp_path / "cli" / "classes.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        assert np.array_equal(a.read(1), b.read(1))
        assert a.tags()["CLASS_NAMES"] == b.tags()["CLASS_NAMES"]
