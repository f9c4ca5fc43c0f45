"""Long-lived watchers on their own daemon threads: one follower per run, shared by the views that show it and
stopped when none does, and the app's periodic polls.

Textual's thread workers run on asyncio's default executor (min(32, cores + 4) threads: 6 on 2 cores). A loop that
lives as long as a screen would hold one of those threads for ever, and the sixth such loop starved every later
worker (issue 17: run views that never loaded, then an app that answered no key). Only short jobs (read the
registry, cancel, export) use workers; anything that loops lives here, with a stop event, and talks to the UI by
posting messages (thread-safe, never blocking: `call_from_thread` would wait on a UI that may be shutting down).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message
from textual.message_pump import MessagePump

from damoc import facade
from damoc.facade import EventTail, RunDir
from damoc_tui import bridge


class Loop:
    """`body(stop)` on a daemon thread until `stop()` (or until `body` returns)."""

    def __init__(self, name: str, body: Callable[[threading.Event], None]) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=body, args=(self.stop_event,), name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()


@dataclass(eq=False)
class Subscriber:
    """A view of a run: where its messages go, and its own read position in the run's events.jsonl (kept while
    the view is hidden, so showing it again continues where it stopped instead of replaying the log)."""

    target: MessagePump
    tail: EventTail
    fresh: bool = True                 # nothing read yet: a long backlog is folded in the follower thread

    def post(self, message: Message) -> None:
        self.target.post_message(message)


@dataclass(eq=False)
class _Follower:
    rd: RunDir
    subscribers: list[Subscriber] = field(default_factory=list)
    loop: Loop | None = None


class RunFollowers:
    """One follower thread per run, whatever the number of views subscribed to it; the thread ends when the last
    view unsubscribes (a view unsubscribes when it is hidden or closed)."""

    def __init__(self, refresh_hz: float = 4.0) -> None:
        self.refresh_hz = refresh_hz
        self._lock = threading.Lock()
        self._runs: dict[str, _Follower] = {}

    def subscribe(self, rd: RunDir, target: MessagePump, tail: EventTail) -> Subscriber:
        sub = Subscriber(target, tail, fresh=tail.offset == 0)
        with self._lock:
            f = self._runs.get(rd.run_id)
            if f is None or f.loop is None or not f.loop.alive or f.loop.stop_event.is_set():
                f = self._runs[rd.run_id] = _Follower(rd)
                f.subscribers.append(sub)
                f.loop = Loop(f"follow {rd.run_id}", lambda stop, f=f: self._follow(f, stop))
            else:
                f.subscribers.append(sub)
        return sub

    def unsubscribe(self, run_id: str, target: MessagePump) -> None:
        with self._lock:
            f = self._runs.get(run_id)
            if f is None:
                return
            f.subscribers = [s for s in f.subscribers if s.target is not target]
            if not f.subscribers:
                if f.loop is not None:
                    f.loop.stop()
                del self._runs[run_id]

    def active(self) -> dict[str, int]:
        """Run id -> number of views following it (tests, the help screen)."""
        with self._lock:
            return {rid: len(f.subscribers) for rid, f in self._runs.items()}

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return [f.loop.thread for f in self._runs.values() if f.loop is not None]

    def stop_all(self) -> None:
        with self._lock:
            for f in self._runs.values():
                if f.loop is not None:
                    f.loop.stop()
            self._runs.clear()

    def _subscribers(self, f: _Follower) -> list[Subscriber]:
        with self._lock:
            return list(f.subscribers)

    def _follow(self, f: _Follower, stop: threading.Event) -> None:
        interval = 1.0 / max(0.5, self.refresh_hz)
        alive_prev: bool | None = None
        while not stop.is_set():
            subs = self._subscribers(f)
            alive = f.rd.is_alive()
            changed = alive != alive_prev
            need_board: list[Subscriber] = []
            for sub in subs:
                ranking = bridge.read_and_post(f.rd, sub.tail, sub.post, alive, first=sub.fresh)
                if ranking:
                    need_board.append(sub)
                if sub.fresh or changed or ranking:     # a session started or ended: the run's time changed
                    sub.post(bridge.liveness(f.rd, alive))
                sub.fresh = False
            if need_board:
                rows = bridge.leaderboard_message(f.rd)
                if rows is not None:
                    for i, sub in enumerate(need_board):
                        sub.post(rows if i == 0 else copy.copy(rows))
            alive_prev = alive
            stop.wait(interval if alive else 1.0)

