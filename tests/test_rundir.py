"""Run directory: create, list, open, and resume after a hard kill without redoing completed cells."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from damoc.errors import DamocError, UnknownNameError
from damoc.pipeline.rundir import RunDir, list_runs

# A stand-in driver: works through 6 cells, appending one line per executed cell to executed.log.
DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from damoc.events import StageTracker
    from damoc.pipeline.rundir import RunDir
    rd = RunDir(Path(sys.argv[1]))
    rd.set_driver_pid(__import__("os").getpid())
    cells = [rd.cell(c, s) for c in ("a", "b", "c") for s in ("prune", "finetune")]
    for cell in rd.pending(cells):
        t = StageTracker(rd, cell.stage, candidate=cell.candidate, run_id=rd.run_id).start(total=1)
        out = cell.prepare()
        (out / "partial.bin").write_bytes(b"x")
        with open(rd.path / "executed.log", "a") as f:
            f.write(cell.key + "\\n")
        time.sleep(float(sys.argv[2]))
        cell.mark_done(score=len(cell.key))
        t.finish("ok")
""")


def test_create_list_open(tmp_path):
    rd = RunDir.create(tmp_path, {"mode": "damoc"}, meta={"mode": "damoc"})
    assert rd.config == {"mode": "damoc"} and rd.events_path.exists()
    assert [r.run_id for r in list_runs(tmp_path)] == [rd.run_id]
    assert RunDir.open(tmp_path, rd.run_id[:17]).path == rd.path            # unique prefix works
    with pytest.raises(UnknownNameError):
        RunDir.open(tmp_path, "nope")
    with pytest.raises(DamocError, match="already exists"):
        RunDir.create(tmp_path, {}, run_id=rd.run_id)


def test_marker_is_written_last_and_prepare_clears_partial(tmp_path):
    rd = RunDir.create(tmp_path, {})
    cell = rd.cell("m", "finetune")
    (cell.prepare() / "half.bin").write_bytes(b"1")
    assert not cell.done
    assert not (cell.prepare() / "half.bin").exists()       # an interrupted attempt is redone from scratch
    cell.mark_done(score=0.5)
    assert cell.done and cell.result()["score"] == 0.5
    assert not list(cell.path.glob(".done.json.*"))          # no temp file left behind


def test_kill_and_resume_skips_finished_cells(tmp_path):
    rd = RunDir.create(tmp_path, {"cells": 6})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(rd.path), "0.4"], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and sum(c.done for c in rd.cells()) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {c.key for c in rd.cells() if c.done}
    assert 2 <= len(done_before) < 6
    assert rd.status() == "interrupted"
    subprocess.run([sys.executable, "-c", DRIVER, str(rd.path), "0"], env=env, check=True)
    executed = (rd.path / "executed.log").read_text().split()
    assert sorted(set(executed)) == sorted(f"{c}/{s}" for c in "abc" for s in ("prune", "finetune"))
    # every finished cell ran exactly once; only the killed one may have run twice
    for key in done_before:
        assert executed.count(key) == 1
    assert len(executed) <= 7
    assert all(c.done for c in rd.cells())
    # markers are the source of truth: a kill between a marker and its event may lose at most that one event
    finished = {e.cell for e in rd.events() if e.kind == "stage_finished"}
    assert len(finished) >= 5 and finished <= {c.key for c in rd.cells()}
