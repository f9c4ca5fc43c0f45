"""Settings resolution, the events codec, reporters and the registry pattern."""
from __future__ import annotations

import json

import pytest

from damoc.errors import ConfigError, UnknownNameError
from damoc.events import (CandidateScored, JsonlWriter, ListReporter, RunStarted, StageFinished, StageProgress,
                          StageTracker, UnknownEvent, decode, read_events)
from damoc.plugins import Registry
from damoc.settings import Settings


def test_home_from_env_and_locations(isolated_home):
    s = Settings.load()
    assert s.home == isolated_home
    assert s.runs_dir == isolated_home / "runs" and s.registry_path.parent == isolated_home


def test_settings_file_then_env_override(isolated_home, monkeypatch):
    isolated_home.mkdir(parents=True)
    (isolated_home / "settings.toml").write_text('device = "cpu"\nthreads = 3\ntheme = "damoc-light"\n')
    monkeypatch.setenv("DAMOC_THREADS", "1")
    s = Settings.load()
    assert (s.device, s.threads, s.theme) == ("cpu", 1, "damoc-light")


def test_bad_settings_are_named(isolated_home, monkeypatch):
    isolated_home.mkdir(parents=True)
    (isolated_home / "settings.toml").write_text('colour = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        Settings.load()
    (isolated_home / "settings.toml").write_text("")
    monkeypatch.setenv("DAMOC_THREADS", "many")
    with pytest.raises(ConfigError, match="DAMOC_THREADS"):
        Settings.load()


def test_event_roundtrip_and_unknown_kinds():
    ev = StageFinished(run_id="r", cell="m/prune", stage="prune", candidate="m", status="skipped",
                       reason="no Base (W_pre)", summary={"k": 1})
    back = decode(ev.to_json())
    assert back == ev
    unk = decode(json.dumps({"v": 9, "kind": "gpu_sample", "run_id": "r", "util": 0.5}))
    assert isinstance(unk, UnknownEvent) and unk.raw["util"] == 0.5
    assert decode("") is None and decode("{torn") is None and decode("[1]") is None
    # unknown extra fields of a known kind are ignored, not fatal
    assert decode(json.dumps({"kind": "run_started", "run_id": "x", "future_field": 1})).run_id == "x"


def test_jsonl_writer_tail_and_throttle(tmp_path):
    path = tmp_path / "events.jsonl"
    w = JsonlWriter(path, min_progress_interval=60)
    w.emit(RunStarted(run_id="r", candidates=["a"]))
    for i in range(50):
        w.emit(StageProgress(run_id="r", cell="a/ft", done=i, total=100))   # throttled to the first
    w.emit(StageProgress(run_id="r", cell="a/ft", done=100, total=100))     # a final one always passes
    w.emit(CandidateScored(run_id="r", candidate="a", metric="f1", score=0.5))
    with open(path, "a") as f:
        f.write('{"kind": "log", "mess')                                   # a line still being written
    events, off = read_events(path)
    assert [type(e).__name__ for e in events] == ["RunStarted", "StageProgress", "StageProgress", "CandidateScored"]
    assert events[2].done == 100
    with open(path, "a") as f:
        f.write('age": "hi"}\n')
    more, _ = read_events(path, off)
    assert len(more) == 1 and more[0].message == "hi"


def test_stage_tracker_emits_typed_events():
    rep = ListReporter()
    t = StageTracker(rep, "filter", run_id="r").start(total=3)
    t.advance(); t.metric("train/loss", 1.5, step=1); t.log("hello")
    t.finish("ok", kept=3)
    kinds = [e.kind for e in rep.events]
    assert kinds == ["stage_started", "stage_progress", "metric", "log", "stage_finished"]
    assert rep.events[0].cell == "_data/filter" and rep.events[-1].summary == {"kept": 3}


def test_registry_lazy_and_did_you_mean():
    reg: Registry = Registry("filter")
    reg.add("kcenter_greedy", "json:dumps", family="distribution", description="d", aliases=("kcenter",))
    assert "KCenterGreedy" in reg and "kcenter" in reg
    assert reg.get("kcenter-greedy") is json.dumps
    with pytest.raises(UnknownNameError) as e:
        reg.get("kcentre_greedy")
    assert "kcenter_greedy" in str(e.value)
