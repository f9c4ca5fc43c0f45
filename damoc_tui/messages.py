"""Messages the bridge's thread workers post to the UI (posting a message is the one thread-safe UI call).

Progress messages coalesce (`can_replace`): when a newer one for the same cell is already queued, the older one is
dropped, so a slow SSH link never replays a backlog of stale progress (toolong's `messages.py` does the same).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from damoc.events import Event, StageProgress


@dataclass
class RunEvents(Message, bubble=False):
    """A batch of events read from a run's events.jsonl (progress excluded, see `RunProgress`)."""

    run_id: str
    events: list[Event]
    alive: bool = False


@dataclass
class RunSnapshot(Message, bubble=False):
    """A long backlog (reattaching to a run that has been going for days) folded off the UI thread: the screen
    takes this state as it is, then applies the events that follow."""

    run_id: str
    state: Any
    alive: bool = False


@dataclass
class RunProgress(Message, bubble=False):
    """The latest progress of one cell."""

    run_id: str
    event: StageProgress

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, RunProgress) and message.run_id == self.run_id
                and message.event.cell == self.event.cell)


@dataclass
class RunLiveness(Message, bubble=False):
    """The driver process of a run appeared or went away (tail keeps going: a resume appends to the same file)."""

    run_id: str
    alive: bool
    status: str


@dataclass
class LeaderboardRows(Message, bubble=False):
    """Leaderboard rows as the pipeline computes them from the run directory (replaces older rows of the run)."""

    run_id: str
    rows: list[dict[str, Any]]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LeaderboardRows) and message.run_id == self.run_id


@dataclass
class JobProgress(Message, bubble=False):
    """Progress of a background job (registry scan, check, pull)."""

    job: str
    done: float = 0
    total: float | None = None
    note: str = ""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.job == self.job


@dataclass
class JobDone(Message, bubble=False):
    """A background job ended: `error` is a one-line reason (plus `hint`) when it failed."""

    job: str
    result: Any = None
    error: str = ""
    hint: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
