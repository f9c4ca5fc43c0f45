"""The only place where the app touches runs and the registry off the UI thread.

Each function here runs inside a Textual thread worker (`@work(thread=True)`) and talks back only through
`post(message)` (thread-safe). Nothing here loads a model: runs are separate processes started by the library; the
app follows their `events.jsonl` with the library's tailer (the run directory is the source of truth, so the app
can quit and reattach).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from textual.message import Message

from damoc import facade
from damoc.errors import DamocError
from damoc.events import CandidateScored, Event, RunFinished, RunStarted, StageFinished, StageProgress
from damoc.facade import EventTail, RunDir
from damoc.settings import Settings
from damoc_tui.messages import JobDone, LeaderboardRows, RunEvents, RunLiveness, RunProgress, RunSnapshot
from damoc_tui.runstate import RunState

Post = Callable[[Message], Any]
T = TypeVar("T")
Summary = dict[str, Any]
SNAPSHOT_OVER = 2000        # a backlog longer than this is folded in the worker, not event by event on the UI thread
# Events after which the pipeline's leaderboard may have changed.
_RANKING_EVENTS = (StageFinished, CandidateScored, RunFinished, RunStarted)
# A run directory half-written or of another version: shown from its events, without the pipeline's view.
_UNREADABLE = (DamocError, OSError, ValueError, KeyError)


def read_and_post(rd: RunDir, tail: EventTail, post: Post, alive: bool, *, first: bool = False) -> bool:
    """Read what was appended to the run's events.jsonl since `tail` last read and post it: a long backlog on a
    first read as one folded `RunSnapshot`, else a batch of events plus the latest progress of each cell.
    Returns whether the pipeline's leaderboard may have changed (a cell finished, a candidate was scored)."""
    events = tail.read()
    if first and len(events) > SNAPSHOT_OVER:
        state = RunState(rd.run_id)
        for e in events:
            state.apply(e)
        post(RunSnapshot(rd.run_id, state, alive))
    elif events:
        _post_batch(rd.run_id, events, alive, post)
    return any(isinstance(e, _RANKING_EVENTS) for e in events)


def liveness(rd: RunDir, alive: bool) -> RunLiveness:
    """Whether the run's driver is there, with the run's wall time by the library's one rule (`RunDir.seconds`):
    the view counts on from it between events."""
    try:
        seconds = rd.seconds()
    except _UNREADABLE:
        seconds = None
    return RunLiveness(rd.run_id, alive, rd.status() if not alive else "running", seconds, time.time())


def follow_run(rd: RunDir, post: Post, stop: threading.Event, *, refresh_hz: float = 4.0,
               idle_poll: float = 1.0) -> None:
    """Tail a run's events.jsonl until `stop` is set, posting batches at most `refresh_hz` times a second, and the
    pipeline's leaderboard rows whenever a batch may have changed them (one view; the app shares one follower per
    run between its views: followers.RunFollowers).

    Keeps following after `run_finished`: a resume appends to the same file. Progress is coalesced to the latest
    event per cell within a batch (and again in the message queue by `RunProgress.can_replace`).
    """
    interval = 1.0 / max(0.5, refresh_hz)
    tail = rd.tail()
    alive_prev: bool | None = None
    while not stop.is_set():
        alive = rd.is_alive()
        if read_and_post(rd, tail, post, alive, first=alive_prev is None) and (rows := leaderboard_message(rd)):
            post(rows)
        if alive != alive_prev:
            post(liveness(rd, alive))
            alive_prev = alive
        stop.wait(interval if alive else idle_poll)


def _post_batch(run_id: str, events: list[Event], alive: bool, post: Post) -> None:
    latest: dict[str, StageProgress] = {}
    others: list[Event] = []
    for e in events:
        if isinstance(e, StageProgress):
            latest[e.cell] = e
        else:
            if isinstance(e, StageFinished):          # a finished cell's stale progress must not arrive after it
                latest.pop(e.cell, None)
            others.append(e)
    if others:
        post(RunEvents(run_id, others, alive))
    for e in latest.values():
        post(RunProgress(run_id, e))


def leaderboard_message(rd: RunDir) -> LeaderboardRows | None:
    try:
        rows = facade.leaderboard_rows(rd)
    except _UNREADABLE:
        return None                             # a half-written run: the event fold shows what there is
    return LeaderboardRows(rd.run_id, rows)


def run_job(done: Callable[..., JobDone[T]], work: Callable[[], T], post: Post, **context: Any) -> None:
    """Run `work` and post `done(result=...)`, or `done(error=..., hint=...)` when it failed (never raises);
    `context` (a run id, a candidate name) is passed to the message either way."""
    try:
        result = work()
    except DamocError as e:
        post(done(error=e.message, hint=e.hint or "", **context))
        return
    except Exception as e:  # a bug or an unexpected library error must reach the screen, not kill the worker
        post(done(error=f"{type(e).__name__}: {e}", **context))
        return
    post(done(result=result, **context))


# -- the Runs screen ---------------------------------------------------------------------------------------------

def run_summaries(settings: Settings, cache: dict[str, tuple[tuple[int, int, bool], Summary]]) -> list[Summary]:
    """The library's overview of each run directory (oldest first) as the Runs screen's dicts; a run whose events
    file and liveness did not change comes from `cache` (so polling a long history costs a stat per run)."""
    out = []
    for rd in facade.run_dirs(settings):
        alive = rd.is_alive()
        try:
            st = os.stat(rd.events_path)
            sig = (st.st_size, st.st_mtime_ns, alive)
        except FileNotFoundError:
            sig = (0, 0, alive)
        hit = cache.get(rd.run_id)
        if hit is not None and hit[0] == sig:
            if alive:             # a live run's time goes on between events (the library's one rule)
                hit[1]["seconds"] = rd.seconds()
            out.append(hit[1])
            continue
        summary = facade.run_overview(rd, alive=alive).to_dict()
        cache[rd.run_id] = (sig, summary)
        out.append(summary)
    _attach_ground_truth(settings, out)
    return out


def _attach_ground_truth(settings: Settings, summaries: list[Summary]) -> None:
    """For each finished non-ground-truth run, the newest finished ground-truth run over the same candidates and
    dataset, compared by the pipeline (top-1 agreement, Kendall tau, time ratio)."""
    truths = [s for s in summaries if s["mode"] == "ground-truth" and s["status"] == "finished"]
    for s in summaries:
        if s["mode"] == "ground-truth" or s["status"] != "finished" or s.get("compare"):
            continue
        match = [t for t in truths if sorted(t["candidates"]) == sorted(s["candidates"])
                 and t.get("dataset") == s.get("dataset")]
        if not match:
            continue
        against = match[-1]["run_id"]
        try:
            res = facade.compare_runs(settings, s["run_id"], against)
        except _UNREADABLE:    # a comparison is a nicety on this screen; its failure must not hide the run list
            continue
        s["compare"] = {"against": against, **res.to_dict()}
