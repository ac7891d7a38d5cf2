"""The one progress object: phases that each start from 0, and the JSON-lines protocol the plugin reads."""
from __future__ import annotations

import json

from core.progress import Progress, cli_progress, emit_result, last_line
from core.progress import tqdm_progress


def test_each_phase_is_reported_from_its_start():
    """After the embedding reached 100 %, the cross-validation and the map are reported too (the bar stalled)."""
    seen = []
    progress = Progress(on_progress=lambda pct, msg="": seen.append((round(pct), msg)))
    for i in range(1, 11):
        progress.update(i, 10, "embedding")
    for i in range(4):
        progress.update(i, 4, "cross-validating")
    progress.update(1, 2, "classifying")
    assert seen[-6:] == [(100, "embedding"), (0, "cross-validating"), (25, "cross-validating"),
                         (50, "cross-validating"), (75, "cross-validating"), (50, "classifying")]


def test_json_lines_protocol(monkeypatch, capsys):
    monkeypatch.setenv("SOFTCON_PROGRESS", "jsonl")
    progress = cli_progress("x")
    progress.log("Model: galileo_nano_s2")
    progress.update(1, 4, "16 windows")
    emit_result({"output": "/tmp/e.tif"})
    last_line("error: The raster has no coordinate reference system.")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"log": "Model: galileo_nano_s2"}, {"progress": 25.0, "text": "16 windows"},
                     {"result": {"output": "/tmp/e.tif"}}, {"error": "The raster has no coordinate reference system."}]
    monkeypatch.delenv("SOFTCON_PROGRESS")
    emit_result({"output": "/tmp/e.tif"})  # without the protocol: nothing on stdout
    assert capsys.readouterr().out == ""


def test_each_stage_gets_a_bar_of_its_own(capsys):
    """On the command line each stage has its own tqdm bar, whose rate and time left are the stage's."""

    p = tqdm_progress("map")
    for i in range(0, 101, 50):
        p.update(i, 100, "windows")
    for i in range(0, 101, 50):
        p.update(i, 100, "classifying")
    finished = [line for line in capsys.readouterr().err.split("\n") if line.strip()]
    assert len(finished) == 2 and all("100/100%" in line for line in finished)
    assert "windows" in finished[0] and "classifying" in finished[1]
