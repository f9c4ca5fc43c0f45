"""The only place where the app touches runs and the registry off the UI thread.

Each function here runs inside a Textual thread worker (`@work(thread=True)`) and talks back only through
`post(message)` (thread-safe). Nothing here loads a model: runs are separate processes started by the library; the
app follows their `events.jsonl` (the run directory is the source of truth, so the app can quit and reattach).
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message

from damoc.errors import DamocError
from damoc.events import Event, RunFinished, RunStarted, StageFinished, CandidateScored, StageProgress, read_events
from damoc.pipeline.rundir import RunDir
from damoc_tui.messages import JobDone, LeaderboardRows, RunEvents, RunLiveness, RunProgress, RunSnapshot

Post = Callable[[Message], Any]
SNAPSHOT_OVER = 2000        # a backlog longer than this is folded in the worker, not event by event on the UI thread
# Events after which the pipeline's leaderboard may have changed.
_RANKING_EVENTS = (StageFinished, CandidateScored, RunFinished, RunStarted)


def follow_run(rd: RunDir, post: Post, stop: threading.Event, *, refresh_hz: float = 4.0,
               leaderboard: Callable[[RunDir], list[dict[str, Any]]] | None = None,
               idle_poll: float = 1.0) -> None:
    """Tail a run's events.jsonl until `stop` is set, posting batches at most `refresh_hz` times a second.

    Keeps following after `run_finished`: a resume appends to the same file. Progress is coalesced to the latest
    event per cell within a batch (and again in the message queue by `RunProgress.can_replace`).
    """
    interval = 1.0 / max(0.5, refresh_hz)
    offset = 0
    alive_prev: bool | None = None
    while not stop.is_set():
        alive = rd.is_alive()
        try:
            new_size = os.stat(rd.events_path).st_size
        except FileNotFoundError:
            new_size = 0
        if new_size < offset:                     # the file was replaced: start over
            offset = 0
        if new_size > offset:                     # a stat per poll; read only when lines were appended
            first = offset == 0
            events, offset = read_events(rd.events_path, offset)
            if first and len(events) > SNAPSHOT_OVER:
                from damoc_tui.runstate import RunState

                state = RunState(rd.run_id)
                for e in events:
                    state.apply(e)
                post(RunSnapshot(rd.run_id, state, alive))
            elif events:
                _post_batch(rd.run_id, events, alive, post)
            if events:
                if leaderboard is not None and any(isinstance(e, _RANKING_EVENTS) for e in events):
                    _post_leaderboard(rd, leaderboard, post)
        if alive != alive_prev:
            post(RunLiveness(rd.run_id, alive, rd.status() if not alive else "running"))
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


def _post_leaderboard(rd: RunDir, leaderboard: Callable[[RunDir], list[dict[str, Any]]], post: Post) -> None:
    try:
        rows = leaderboard(rd)
    except DamocError:
        return                                  # a half-written run: the event fold shows what there is
    except (OSError, ValueError, KeyError):
        return
    post(LeaderboardRows(rd.run_id, rows))


def run_job(job: str, fn: Callable[[], Any], post: Post, **extra: Any) -> None:
    """Run `fn` and post `JobDone` with its result, or with the error's reason and hint (never raises)."""
    try:
        result = fn()
    except DamocError as e:
        post(JobDone(job, error=e.message, hint=e.hint or "", extra=extra))
        return
    except Exception as e:  # a bug or an unexpected library error must reach the screen, not kill the worker
        post(JobDone(job, error=f"{type(e).__name__}: {e}", extra=extra))
        return
    post(JobDone(job, result=result, extra=extra))


def wait_for_file(path: Path, timeout: float, stop: threading.Event | None = None) -> bool:
    """Wait until `path` exists (a detached run's directory appears a moment after launch)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return True
        if stop is not None and stop.wait(0.05):
            return False
        time.sleep(0.05)
    return path.exists()


# -- the Runs screen ---------------------------------------------------------------------------------------------

def run_summaries(settings: Any, cache: dict[str, tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One summary per run directory, oldest first; a run whose events file and liveness did not change comes
    from `cache` (so polling a long history every few seconds costs a stat per run)."""
    from damoc.pipeline.rundir import list_runs

    out = []
    for rd in list_runs(settings.runs_dir):
        try:
            st = os.stat(rd.events_path)
            sig: Any = (st.st_size, st.st_mtime_ns, rd.is_alive())
        except FileNotFoundError:
            sig = (0, 0, rd.is_alive())
        hit = cache.get(rd.run_id)
        if hit is not None and hit[0] == sig:
            out.append(hit[1])
            continue
        summary = summarise_run(rd, alive=sig[2])
        cache[rd.run_id] = (sig, summary)
        out.append(summary)
    _attach_ground_truth(settings, out)
    return out


def summarise_run(rd: RunDir, alive: bool) -> dict[str, Any]:
    """What the Runs screen lists: mode, status, winner and ranking (the pipeline's leaderboard), wall time."""
    from damoc_tui import services

    cfg = rd.config
    meta = rd.meta
    status = "running" if alive else rd.status()
    ranking: list[dict[str, Any]] = []
    reason = ""
    try:
        lb = services.leaderboard(rd)
        ranking = [{"rank": r.rank, "name": r.candidate, "score": r.score, "gap": r.gap, "too_close": r.too_close}
                   for r in lb.rows if r.score is not None]
        reason = lb.note
    except (DamocError, OSError, ValueError, KeyError, TypeError):
        pass                                   # a run of another version or half-created: listed without ranking
    seconds = meta.get("seconds")
    if seconds is None:
        events = rd.events()
        starts = [e.t for e in events if isinstance(e, RunStarted)]
        ends = [e.seconds for e in events if isinstance(e, RunFinished)]
        seconds = sum(ends) if ends else ((time.time() - starts[0]) if starts and alive else None)
    for e in reversed(rd.events()) if status in ("failed", "cancelled", "interrupted") else []:
        if isinstance(e, RunFinished) and e.reason:
            reason = e.reason
            break
    dataset = (cfg.get("dataset") or {}).get("train") if isinstance(cfg.get("dataset"), dict) else None
    winner = ranking[0] if ranking else {}
    return {
        "run_id": rd.run_id, "mode": str(cfg.get("mode") or meta.get("mode") or ""), "status": status,
        "n": len(cfg.get("candidates") or meta.get("candidates") or []),
        "candidates": list(cfg.get("candidates") or meta.get("candidates") or []),
        "winner": str(winner.get("name") or ""), "score": winner.get("score"), "seconds": seconds,
        "dataset": dataset or meta.get("dataset"), "ranking": ranking, "reason": reason,
        "label": cfg.get("label", "") or meta.get("label", ""),
    }


def _attach_ground_truth(settings: Any, summaries: list[dict[str, Any]]) -> None:
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
            from damoc_tui import services

            res = services.compare_runs(settings, s["run_id"], against)
        except Exception:  # a comparison is a nicety on this screen; its failure must not hide the run list
            continue
        d = res if isinstance(res, dict) else services._as_dict(res)
        s["compare"] = {"against": against, **d}
