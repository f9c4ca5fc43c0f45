"""Issue 16, items 2, 4, 7, 8 (disk full for runs) and 9 (--test = --dataset): run ids are names, one driver per
run, unreadable run files, a full disk.

The one-driver tests start real driver processes through the real `api.resume_run` (the OS lock is taken in the
starter and inherited by the driver); the driver's command is swapped for a stand-in that records its pid and holds
the inherited lock until the test releases it, so each repetition takes a fraction of a second.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from damoc.errors import ConfigError, DamocError, UnknownNameError
from damoc.pipeline.rundir import RunBusy, RunDir, resolve_run_path
from damoc.registry.storage import StorageError
from tests.helpers.cli import damoc


def _run(settings, run_id: str | None = None) -> RunDir:
    rd = RunDir.create(settings.runs_dir, {"mode": "damoc"}, run_id=run_id, meta={"mode": "damoc"})
    (rd.path / "plan.json").write_text(json.dumps({"mode": "damoc", "config": {}, "candidates": [], "data": [],
                                                   "cells": []}))
    return rd


# -- run ids are names, not paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "../../elsewhere/run", "/tmp/run", "a/b", ".", "..", ".hidden", "x\ny",
                                 "", "run id", "~/run"])
def test_a_path_is_never_a_run_id(settings, tmp_path, bad):
    outside = tmp_path / "elsewhere" / "run"
    outside.mkdir(parents=True)
    (outside / "config.json").write_text("{}")
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(DamocError):
        resolve_run_path(settings.runs_dir, bad)


def test_ids_prefixes_latest_and_links_out(settings, tmp_path):
    a = _run(settings, "20260101-000000-aaaa")
    b = _run(settings, "20260102-000000-bbbb")
    assert resolve_run_path(settings.runs_dir, "20260101").name == a.run_id
    assert resolve_run_path(settings.runs_dir, "latest").name == b.run_id
    with pytest.raises(UnknownNameError):
        resolve_run_path(settings.runs_dir, "2026")                 # ambiguous
    outside = tmp_path / "outside"
    shutil.copytree(a.path, outside)
    (settings.runs_dir / "20260103-000000-link").symlink_to(outside)
    with pytest.raises(DamocError, match="outside the runs directory"):
        resolve_run_path(settings.runs_dir, "20260103-000000-link")


def test_resume_attach_compare_of_a_path_start_nothing_and_write_nothing(settings, tmp_path):
    """The issue's case: `--resume ../../elsewhere/run` used to start a driver there. Nothing starts now, nothing in
    the folder changes, every command says it is not a run id (exit 2, no traceback)."""
    rd = _run(settings)
    outside = tmp_path / "elsewhere" / "run"
    shutil.copytree(rd.path, outside)
    before = {p: p.stat().st_mtime_ns for p in outside.rglob("*")}
    rel = os.path.relpath(outside, settings.runs_dir)
    for args in (["run", "--resume", rel, "--json"], ["attach", rel], ["compare", rel, rd.run_id],
                 ["run", "--resume", str(outside)]):
        r = damoc(*args)
        assert r.returncode == 2 and "not a run id" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert {p: p.stat().st_mtime_ns for p in outside.rglob("*")} == before
    assert not (outside / "driver.lock").exists() and not (outside / "logs").exists()


def _until(condition, timeout: float = 60.0) -> None:
    """Wait for a file-system event another process causes (bounded, never a fixed sleep)."""
    import time

    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


# -- one driver per run -------------------------------------------------------------------------------------------

STAND_IN = """
import os, sys, time
from pathlib import Path
run = Path(sys.argv[1])
with open(run / "drivers.log", "a") as f:
    f.write(f"{os.getpid()}\\n")
while not (run / "release").exists():
    time.sleep(0.01)
"""


@pytest.fixture
def stand_in_driver(monkeypatch, tmp_path):
    """api._spawn_driver runs STAND_IN instead of the driver module (same lock, same inherited descriptor)."""
    from damoc.pipeline import api

    script = tmp_path / "stand_in.py"
    script.write_text(STAND_IN)
    real = subprocess.Popen
    started: list[subprocess.Popen] = []

    def popen(cmd, **kw):
        if cmd[1:3] == ["-m", "damoc.pipeline.driver"] and kw.get("start_new_session"):   # api's spawn only
            cmd = [cmd[0], str(script), cmd[3]]
        p = real(cmd, **kw)
        started.append(p)
        return p

    monkeypatch.setattr(api.subprocess, "Popen", popen)
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_simultaneous_resumes_start_exactly_one_driver_every_time(settings, stand_in_driver):
    from damoc.pipeline import api

    rd = _run(settings)
    starters = 6
    for rep in range(20):
        barrier = threading.Barrier(starters)
        results: list[object] = []

        def resume() -> None:
            barrier.wait()
            try:
                results.append(api.resume_run(settings, rd.run_id))
            except RunBusy as e:
                results.append(e)

        threads = [threading.Thread(target=resume) for _ in range(starters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        handles = [r for r in results if isinstance(r, api.RunHandle)]
        refused = [r for r in results if isinstance(r, RunBusy)]
        assert len(handles) == 1 and len(refused) == starters - 1, (rep, results)
        assert all("already being driven by pid" in e.message or "still held" in e.message for e in refused)
        log = rd.path / "drivers.log"
        _until(lambda: log.exists() and len(log.read_text().split()) >= rep + 1)
        (rd.path / "release").touch()
        stand_in_driver[-1].wait(timeout=30)
        assert len(log.read_text().split()) == rep + 1          # exactly one more driver process ran
        assert rd.meta["pid"] == handles[0].pid
        (rd.path / "release").unlink()


def test_the_cli_says_who_drives_the_run(settings, stand_in_driver):
    from damoc.pipeline import api

    rd = _run(settings)
    h = api.resume_run(settings, rd.run_id)
    r = damoc("run", "--resume", rd.run_id)
    assert r.returncode == 2 and f"already being driven by pid {h.pid}" in r.stderr
    assert "damoc attach" in r.stderr and "Traceback" not in r.stderr
    (rd.path / "release").touch()


def test_a_driver_started_by_hand_on_a_held_run_touches_nothing(settings, stand_in_driver):
    from damoc.pipeline import api

    rd = _run(settings)
    api.resume_run(settings, rd.run_id)
    events, meta = rd.events_path.read_bytes(), (rd.path / "run.json").read_bytes()
    res = subprocess.run([sys.executable, "-m", "damoc.pipeline.driver", str(rd.path), "--resume"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 75 and "already being driven" in res.stderr
    assert rd.events_path.read_bytes() == events and (rd.path / "run.json").read_bytes() == meta
    (rd.path / "release").touch()


def test_the_lock_goes_with_the_driver_even_when_it_is_killed(settings, stand_in_driver):
    from damoc.pipeline import api

    rd = _run(settings)
    h = api.resume_run(settings, rd.run_id)
    os.kill(h.pid, 9)
    stand_in_driver[-1].wait(timeout=30)
    h2 = api.resume_run(settings, rd.run_id)              # free again at once: the kernel released it
    assert h2.pid != h.pid
    (rd.path / "release").touch()


# -- unreadable run files -----------------------------------------------------------------------------------------

def test_one_unreadable_run_json_does_not_break_the_list(settings):
    good, bad = _run(settings, "20260101-000000-good"), _run(settings, "20260101-000000-badd")
    (bad.path / "run.json").write_text("{garbage")
    r = damoc("runs", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["run_id"]: x for x in json.loads(r.stdout)}
    assert rows[good.run_id]["status"] != "unreadable" and rows[bad.run_id]["status"] == "unreadable"
    assert "run.json" in rows[bad.run_id]["problem"]
    r = damoc("runs", env={"COLUMNS": "200"})
    assert r.returncode == 0 and "unreadable" in r.stdout and "Traceback" not in r.stderr
    with pytest.raises(DamocError, match="cannot be resumed"):
        from damoc.pipeline import api
        api.resume_run(settings, bad.run_id)


def test_a_garbage_done_json_is_not_done_and_says_so(settings, tmp_path):
    from tests.test_old_rundir import DAMOC_RUN, FIXTURE

    shutil.copytree(FIXTURE / DAMOC_RUN, settings.runs_dir / DAMOC_RUN)
    rd = RunDir.open(settings.runs_dir, DAMOC_RUN)
    victim = next(c for c in rd.cells() if c.candidate != "_data" and c.done)
    victim.marker.write_bytes(b"\x00garbage{")
    assert not victim.done and victim.result() is None and "not valid JSON" in victim.marker_problem()
    assert rd.unusable_markers() == [(victim.key, victim.marker_problem())]
    r = damoc("attach", DAMOC_RUN, "--json")
    assert "Traceback" not in r.stderr and f"{victim.key}: done.json is not valid JSON" in r.stderr
    assert "counts as not done" in r.stderr
    json.loads(r.stdout)
    victim.marker.write_text("[1, 2]")                            # valid JSON, not a marker
    assert not victim.done and "not a JSON object" in victim.marker_problem()


# -- a full disk ----------------------------------------------------------------------------------------------------

def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device", str(a[0]) if a else None)


def _plan(settings, tmp_path):
    from damoc.pipeline import api

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(20)))
    from tests.helpers.fakes import write_model

    model = write_model(tmp_path / "m" / "chat", chat=True)
    cfg = api.load_config(None, [], {"dataset.train": str(data), "candidates": [str(model)]})
    return cfg, api.plan_run(settings, cfg, with_preflight=False)


def test_a_run_on_a_full_disk_says_where_and_leaves_no_folder(settings, tmp_path, monkeypatch):
    from damoc.pipeline import api, rundir

    cfg, plan = _plan(settings, tmp_path)
    monkeypatch.setattr(rundir, "atomic_write_json", _enospc)
    with pytest.raises(StorageError) as e:
        api.start_run(settings, cfg, plan=plan)
    assert "no space left" in e.value.message and "free" in e.value.message
    assert str(settings.runs_dir) in e.value.message
    assert not settings.runs_dir.exists() or list(settings.runs_dir.iterdir()) == []


def test_a_resume_on_a_full_disk_says_where_and_starts_nothing(settings, tmp_path, monkeypatch, stand_in_driver):
    from damoc.pipeline import api, rundir

    rd = _run(settings)
    monkeypatch.setattr(rundir, "atomic_write_json", _enospc)
    with pytest.raises(StorageError, match="no space left"):
        api.resume_run(settings, rd.run_id)
    for p in stand_in_driver:                       # a driver that had started is stopped again
        assert p.wait(timeout=30) is not None
    monkeypatch.undo()
    assert rd.lock().acquire()                      # and the lock is free


def test_the_cli_shows_a_full_disk_as_one_line(settings, tmp_path, monkeypatch, capsys):
    from damoc.cli import cli
    from damoc.cli.common import run_cli
    from damoc.pipeline import rundir

    cfg_dir = tmp_path / "x"
    cfg_dir.mkdir()
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    monkeypatch.setattr(rundir, "atomic_write_json", _enospc)
    from tests.helpers.fakes import write_model

    model = write_model(tmp_path / "m" / "chat", chat=True)
    rc = run_cli(cli, ["run", "--dataset", str(data), "--candidates", str(model), "--detach"])
    err = capsys.readouterr().err
    assert rc == 2 and "no space left" in err and "hint:" in err and "Traceback" not in err


# -- sharp edges ------------------------------------------------------------------------------------------------------

def test_test_file_equal_to_the_training_file_is_refused(settings, tmp_path):
    from damoc.pipeline import api

    cfg, _ = _plan(settings, tmp_path)
    same = api.load_config(None, [], {"dataset.train": cfg.dataset.train, "dataset.test": cfg.dataset.train,
                                      "candidates": cfg.candidates})
    with pytest.raises(ConfigError, match="training data"):
        api.plan_run(settings, same, with_preflight=False)
    link = tmp_path / "link.jsonl"
    link.symlink_to(cfg.dataset.train)
    via_link = api.load_config(None, [], {"dataset.train": cfg.dataset.train, "dataset.test": str(link),
                                          "candidates": cfg.candidates})
    with pytest.raises(ConfigError, match="training data"):
        api.plan_run(settings, via_link, with_preflight=False)


def test_a_candidate_given_twice_or_as_a_file_is_refused(settings, tmp_path):
    from damoc.pipeline import api

    cfg, _ = _plan(settings, tmp_path)
    with pytest.raises(ConfigError, match="twice"):
        api.plan_run(settings, api.load_config(None, [], {"dataset.train": cfg.dataset.train,
                                                          "candidates": [cfg.candidates[0], cfg.candidates[0]]}),
                     with_preflight=False)
    as_file = api.load_config(None, [], {"dataset.train": cfg.dataset.train,
                                         "candidates": [str(Path(cfg.candidates[0]) / "config.json")]})
    with pytest.raises(ConfigError, match="give the folder that holds it") as e:
        api.plan_run(settings, as_file, with_preflight=False)
    assert str(Path(cfg.candidates[0]).resolve()) in e.value.hint

