"""Messages the bridge's thread workers post to the UI (posting a message is the one thread-safe UI call).

Progress messages coalesce (`can_replace`): when a newer one for the same cell is already queued, the older one is
dropped, so a slow SSH link never replays a backlog of stale progress (toolong's `messages.py` does the same).
Each background job answers with its own `JobDone` subclass, so a screen handles each result in its own typed
handler (`on_plan_checked`, `on_run_launched`, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from textual.message import Message

from damoc.events import Event, StageProgress
from damoc.facade import (Candidate, CheckResult, Comparison, Plan, RunConfig, RunHandle, ScanReport)
from damoc_tui.runstate import RunState

T = TypeVar("T")


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
    state: RunState
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
    """The driver process of a run appeared or went away (tail keeps going: a resume appends to the same file), or
    a session started or ended: with the run's wall time, which the view counts on from while the run is alive."""

    run_id: str
    alive: bool
    status: str
    seconds: float | None = None     # the run's wall time by `RunDir.seconds()` at `at` (time.time())
    at: float = 0.0


@dataclass
class RunsListed(Message, bubble=False):
    """The Runs screen's poller read the run directories (summaries, oldest first)."""

    rows: list[dict[str, Any]]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)


@dataclass
class LiveRuns(Message, bubble=False):
    """The runs whose driver is alive now (the app's watcher; `first` on its first look, to announce them)."""

    runs: tuple[str, ...]
    first: bool = False

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LiveRuns) and not message.first


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


# -- results of background jobs -----------------------------------------------------------------------------------

@dataclass
class JobDone(Message, Generic[T], bubble=False):
    """A background job ended: its `result`, or a one-line `error` (plus `hint`) when it failed."""

    title: ClassVar[str] = "job"          # names the job in an error notification
    result: T | None = None
    error: str = ""
    hint: str = ""


@dataclass
class RegistryRead(JobDone[list[Candidate]]):
    title: ClassVar[str] = "registry"


@dataclass
class CandidateAdded(JobDone[Candidate]):
    title: ClassVar[str] = "add"


@dataclass
class CandidateRemoved(JobDone[str]):
    title: ClassVar[str] = "remove"
    name: str = ""


@dataclass
class ModelsScanned(JobDone[ScanReport]):
    title: ClassVar[str] = "scan"


@dataclass
class OnlineChecked(JobDone[list[CheckResult]]):
    title: ClassVar[str] = "check"


@dataclass
class ZooBuilt(JobDone[list[str]]):
    title: ClassVar[str] = "demo zoo"


@dataclass
class CandidatePulled(JobDone[dict[str, str]]):
    title: ClassVar[str] = "pull"
    name: str = ""


@dataclass
class DatasetInspected(JobDone[dict[str, Any]]):
    title: ClassVar[str] = "inspect"
    path: str = ""


@dataclass
class PlanChecked(JobDone[tuple[RunConfig, Plan]]):
    title: ClassVar[str] = "plan"


@dataclass
class ConfigSaved(JobDone[Path]):
    title: ClassVar[str] = "save"


@dataclass
class ConfigLoaded(JobDone[RunConfig]):
    title: ClassVar[str] = "load"


@dataclass
class RunLaunched(JobDone[RunHandle]):
    title: ClassVar[str] = "launch"


@dataclass
class RunCancelled(JobDone[None]):
    title: ClassVar[str] = "cancel"


@dataclass
class RunResumed(JobDone[RunHandle]):
    title: ClassVar[str] = "resume"
    run_id: str = ""


@dataclass
class LeaderboardExported(JobDone[Path]):
    title: ClassVar[str] = "export"


@dataclass
class LeaderboardCopied(JobDone[str]):
    """The leaderboard as Markdown, for the copy viewer."""

    title: ClassVar[str] = "copy"
    run_id: str = ""


@dataclass
class HandoffReady(JobDone[dict[str, str]]):
    title: ClassVar[str] = "handoff"
    run_id: str = ""


@dataclass
class RunsCompared(JobDone[Comparison]):
    title: ClassVar[str] = "compare"
    a: str = ""
    b: str = ""
