"""Progress across the stages of a run (embedding, cross-validation, classifying): each is reported from its start,
and on the command line each gets a bar of its own, so that its rate and time left are its own."""
from __future__ import annotations

from core.progress import Progress, tqdm_progress


def test_a_new_stage_is_reported_from_its_start():
    seen = []
    p = Progress(on_progress=lambda pct, msg="": seen.append((round(pct), msg)))
    for i in range(0, 101, 25):
        p.update(i, 100, "windows")
    for i in range(0, 11, 5):
        p.update(i, 10, "classifying")
    assert seen == [(0, "windows"), (25, "windows"), (50, "windows"), (75, "windows"), (100, "windows"),
                    (0, "classifying"), (50, "classifying"), (100, "classifying")]


def test_each_stage_gets_a_bar_of_its_own(capsys):
    p = tqdm_progress("map")
    for i in range(0, 101, 50):
        p.update(i, 100, "windows")
    for i in range(0, 101, 50):
        p.update(i, 100, "classifying")
    finished = [line for line in capsys.readouterr().err.split("\n") if line.strip()]
    assert len(finished) == 2 and all("100/100%" in line for line in finished)
    assert "windows" in finished[0] and "classifying" in finished[1]
