"""The fault matrix: bad inputs, flags and environments run through the real command lines, each outcome classified.

    .venv/bin/python scripts/fault_matrix.py [--repo DIR] [--work DIR] [--only SUBSTRING] [--json OUT]

Every case runs ``python -m <cli> ...`` in a fresh process (``--repo``: the checkout under test, default this
one) and ends as one of: ``correct`` (exit 0 and the output checks pass), ``clear error`` (a non-zero exit with
one ``error:`` line and no traceback), ``traceback`` (a Python traceback, or the error funnel's "internal
error" line: a bug either way), ``silently wrong`` (exit 0 on input that should have been refused, or a map
that fails its check: e.g. under 95 % agreement with the map of the clean crop), ``warned, still wrong`` (the
same, with a ``Warning:`` line in the log),
``hang`` (past the case's timeout) or ``data loss`` (an earlier output damaged, or partial outputs left).
A clear error on input that should have worked is also listed as ``refused``. The cases themselves are in
``scripts/fault_cases.py``; the inputs, all cut from the real scene, in ``scripts/fault_fixtures.py``.
Prints one line per case and a JSON summary (counts per outcome and per group).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fault_cases  # noqa: E402 - after the path set-up
import fault_fixtures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("correct", "clear error", "traceback", "silently wrong", "warned, still wrong", "hang", "data loss")


def error_lines(err: str) -> list[str]:
    """The run's error lines: ``error: ...`` (argparse's ``prog: error: ...`` too), ``Interrupted``, or the
    plugin protocol's ``{"error": ...}`` (``SOFTCON_PROGRESS=jsonl``)."""
    lines = [ln.strip() for ln in err.replace("\r", "\n").splitlines()]
    return [ln for ln in lines if ln.startswith(("error:", "Interrupted", '{"error":')) or ": error:" in ln]


def outcome(case: fault_cases.Case, rc: int | None, err: str, problem: str | None) -> str:
    """One of :data:`OUTCOMES` for a finished (or timed-out, ``rc`` None) run."""
    if rc is None:
        return "hang"
    if problem and problem.startswith("data loss"):
        return "data loss"
    if "Traceback (most recent call last)" in err or "internal error" in err:
        return "traceback"
    if rc != 0:
        if case.expect == "interrupt" and rc == 130 and not problem:
            return "correct"
        return "clear error" if error_lines(err) and not problem else ("traceback" if not error_lines(err) else
                                                                       "data loss")
    if case.expect in ("error", "interrupt") or problem:
        return "warned, still wrong" if warned(err) else "silently wrong"
    return "correct"


def warned(err: str) -> bool:
    """A warning about the input in the run's log ("Warning: ..."); the report's own lowercase "warning: ..."
    lines (few samples per class...) are there on clean input too and do not count."""
    return any(ln.strip().startswith("Warning:") for ln in err.replace("\r", "\n").splitlines())


def run_case(case: fault_cases.Case, ctx: fault_cases.Ctx) -> dict:
    out = ctx.work / "runs" / case.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", SOFTCON_CACHE=str(ctx.work / "cache"),
               QT_QPA_PLATFORM="offscreen")
    env.update({k: ctx.fill(v, out) for k, v in case.env.items()})
    for k in [k for k, v in env.items() if v is None or v == "<unset>"]:
        env.pop(k)
    if case.before:
        case.before(ctx, out)
    cmd = [ctx.python, "-m", *[ctx.fill(a, out) for a in case.argv]]
    if case.shell_prefix:
        cmd = ["bash", "-c", case.shell_prefix + ' && exec "$@"', "x", *cmd]
    t0 = time.perf_counter()
    rc, err = None, ""
    try:
        rc, err = _execute(cmd, case, env, ctx)
    finally:
        seconds = time.perf_counter() - t0
        problem = None
        try:
            if case.check and rc is not None:
                problem = case.check(ctx, out, rc, err)
        except Exception as e:  # a check that cannot read the outputs: the outputs are wrong
            problem = f"check failed: {type(e).__name__}: {e}"
        if case.after:
            case.after(ctx, out)
    res = outcome(case, rc, err, problem)
    refused = case.expect == "ok" and res == "clear error"
    lines = error_lines(err)
    return {"name": case.name, "group": case.group, "expect": case.expect, "rc": rc, "outcome": res,
            "refused": refused, "seconds": round(seconds, 1), "problem": problem,
            "message": (lines[-1] if lines else err.strip().splitlines()[-1] if err.strip() else "")[:300]}


def _execute(cmd: list[str], case: fault_cases.Case, env: dict, ctx: fault_cases.Ctx) -> tuple[int | None, str]:
    if case.kill is None and not case.concurrent:
        try:
            p = subprocess.run(cmd, cwd=ctx.repo, env=env, capture_output=True, text=True, timeout=case.timeout)
            return p.returncode, p.stdout[-4000:] + p.stderr
        except subprocess.TimeoutExpired as e:
            return None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else str(e.stderr)
    if case.concurrent:
        procs = [subprocess.Popen(cmd, cwd=ctx.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=case.timeout) for p in procs]
        rcs = [p.returncode for p in procs]
        return max(rcs, key=abs), "\n".join(o[1] for o in outs)
    delay, sig = case.kill
    p = subprocess.Popen(cmd, cwd=ctx.repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []  # stderr, then stdout (the plugin protocol's lines)
    out: list[str] = []
    readers = [threading.Thread(target=lambda f=f, sink=sink: sink.extend(iter(f.readline, "")), daemon=True)
               for f, sink in ((p.stderr, err), (p.stdout, out))]
    for r in readers:
        r.start()
    t0 = time.perf_counter()  # mid-run: once the first progress line is out (imports can take long on a busy CPU)
    while (p.poll() is None and not any("%" in ln or '"progress"' in ln for ln in err + out)
           and time.perf_counter() - t0 < case.timeout):
        time.sleep(0.5)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(sig)
    try:
        p.wait(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        return None, "did not stop after the signal"
    for r in readers:
        r.join(timeout=10)
    if sig == signal.SIGKILL:  # the rerun is the case
        q = subprocess.run(cmd, cwd=ctx.repo, env=env, capture_output=True, text=True, timeout=case.timeout)
        return q.returncode, q.stderr
    return p.returncode, "".join(err + out)


def setup(work: Path, repo: Path, python: str, fix: Path) -> fault_cases.Ctx:
    """Inputs (once per fixtures folder) and the reference outputs of the code under test (once per work folder)."""
    if not (fix / ".done").exists():
        shutil.rmtree(fix, ignore_errors=True)
        fix.mkdir(parents=True)
        fault_fixtures.rasters(fix)
        fault_fixtures.samples(fix, fix / "crop.tif")
        fault_fixtures.training(fix, fault_fixtures.s2_scene_files())
        (fix / ".done").touch()
    if not (fix / ".tiles_done").exists():  # added later: made on their own in an older fixtures folder
        for folder in fix.glob("tiles_*"):
            shutil.rmtree(folder)
        fault_fixtures.tiles(fix, fix / "crop.tif")
        (fix / ".tiles_done").touch()
    ctx = fault_cases.Ctx(work=work, repo=repo, python=python, fix=fix, ref=work / "ref")
    env = dict(os.environ, HF_HUB_OFFLINE="1", SOFTCON_CACHE=str(work / "cache"))
    for name, argv in fault_cases.reference_runs(ctx).items():  # each once per work folder, in order
        if (ctx.ref / f".{name}.done").exists():
            continue
        p = subprocess.run([python, "-m", *argv], cwd=repo, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"reference run failed: {' '.join(argv)}\n{p.stderr[-3000:]}")
        (ctx.ref / f".{name}.done").touch()
    return ctx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=str(ROOT), help="checkout under test (its .venv runs the cases)")
    p.add_argument("--work", default="/tmp/fault_matrix", help="fixtures, runs, cache (reused across runs)")
    p.add_argument("--fixtures", help="folder of the inputs (made once; default WORK/fixtures)")
    p.add_argument("--only", action="append", help="run only cases whose name or group contains this")
    p.add_argument("--json", help="write every case's result here")
    p.add_argument("--jobs", type=int, default=1, help="cases run side by side (environment cases run alone, last)")
    p.add_argument("--timeout-scale", type=float, default=1.0,
                   help="multiply every case's timeout (a busy, shared machine: 4); a hang is past it")
    a = p.parse_args()
    repo, work = Path(a.repo).resolve(), Path(a.work).resolve()
    python = str(repo / ".venv" / "bin" / "python")
    work.mkdir(parents=True, exist_ok=True)
    ctx = setup(work, repo, python, Path(a.fixtures).resolve() if a.fixtures else work / "fixtures")
    cases = fault_cases.cases(ctx)
    for c in cases:
        c.timeout *= a.timeout_scale
    if a.only:
        cases = [c for c in cases if any(s in c.name or s == c.group for s in a.only)]

    def one(c: fault_cases.Case) -> dict:
        r = run_case(c, ctx)
        print(f"{r['outcome']:20s} {r['seconds']:6.1f}s  {c.group:9s} {c.name:34s} {r['message'][:110]}"
              + (f"  [{r['problem']}]" if r["problem"] else "") + ("  [refused]" if r["refused"] else ""),
              flush=True)
        return r

    alone = [c for c in cases if c.group == "env" or c.kill or c.concurrent]  # timing, mounts, memory: one at a time
    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        done = dict(zip([c.name for c in cases if c not in alone], pool.map(one, [c for c in cases if c not in alone])))
    done.update({c.name: one(c) for c in alone})
    results = [done[c.name] for c in cases]
    summary = {"repo": str(repo), "cases": len(results),
               "outcomes": {o: sum(r["outcome"] == o for r in results) for o in OUTCOMES},
               "refused_valid_input": sum(r["refused"] for r in results),
               "by_group": {g: {o: n for o in OUTCOMES
                                if (n := sum(r["outcome"] == o for r in results if r["group"] == g))}
                            for g in dict.fromkeys(r["group"] for r in results)},
               "loadavg": Path("/proc/loadavg").read_text().split()[:3]}
    print(json.dumps(summary, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": summary, "results": results}, indent=1))


if __name__ == "__main__":
    main()
