"""Typed pipeline events and their JSON-lines codec.

Every stage reports through a `Reporter`; the CLI's rich progress, the run directory's `events.jsonl` and the TUI
are all consumers of the same events. The codec tolerates unknown kinds (an older TUI can read a newer run).
"""
from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

Status = Literal["ok", "failed", "cancelled", "skipped"]
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    run_id: str = ""
    t: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, "kind": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str)


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    mode: str = "damoc"
    candidates: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    pid: int = 0
    resumed: bool = False


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: Status = "ok"
    reason: str = ""
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StageStarted(Event):
    kind: ClassVar[str] = "stage_started"
    cell: str = ""                 # "<candidate>/<stage>" or "_data/<stage>" for shared data stages
    stage: str = ""
    candidate: str = ""
    total: int | None = None


@dataclass(frozen=True, kw_only=True)
class StageProgress(Event):
    kind: ClassVar[str] = "stage_progress"
    cell: str = ""
    stage: str = ""
    candidate: str = ""
    done: int = 0
    total: int | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class StageFinished(Event):
    kind: ClassVar[str] = "stage_finished"
    cell: str = ""
    stage: str = ""
    candidate: str = ""
    status: Status = "ok"
    reason: str = ""
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Metric(Event):
    kind: ClassVar[str] = "metric"
    cell: str = ""
    candidate: str = ""
    name: str = ""                 # e.g. "train/loss", "eval/f1"
    value: float = 0.0
    step: int | None = None


@dataclass(frozen=True, kw_only=True)
class CandidateScored(Event):
    kind: ClassVar[str] = "candidate_scored"
    candidate: str = ""
    metric: str = ""
    score: float = 0.0
    stderr: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Log(Event):
    kind: ClassVar[str] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = ""
    cell: str = ""


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A line whose kind this version does not know; kept so nothing is lost when re-encoded."""

    kind: ClassVar[str] = "unknown"
    raw: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, RunFinished, StageStarted, StageProgress, StageFinished, Metric, CandidateScored, Log)
}


def decode(line: str) -> Event | None:
    """One JSON line to an event; None for blank or unparsable lines (a torn last line after a crash)."""
    line = line.strip()
    if not line:
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    cls = EVENT_TYPES.get(str(data.get("kind")))
    if cls is None:
        return UnknownEvent(run_id=str(data.get("run_id", "")), t=float(data.get("t", 0) or 0), raw=data)
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError):
        return UnknownEvent(run_id=str(data.get("run_id", "")), raw=data)


def read_events(path: Path, offset: int = 0) -> tuple[list[Event], int]:
    """Events from byte `offset` on, and the offset after the last complete line (for tailing)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1            # never consume a line still being written
    events = [e for raw in data[:end].splitlines() if (e := decode(raw.decode("utf-8", "replace"))) is not None]
    return events, offset + end


@runtime_checkable
class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class NullReporter:
    def emit(self, event: Event) -> None:
        pass


class ListReporter:
    """Collects events in memory (tests, and callers that want the events afterwards)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


class JsonlWriter:
    """Appends events to a file: one `write` of one line with O_APPEND, so several processes can share it."""

    def __init__(self, path: Path, *, min_progress_interval: float = 0.25) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._interval = min_progress_interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if isinstance(event, StageProgress):      # rate-limit progress, never other kinds
            now = time.monotonic()
            last = self._last.get(event.cell, 0.0)
            final = event.total is not None and event.done >= event.total
            if not final and now - last < self._interval:
                return
            self._last[event.cell] = now
        data = (event.to_json() + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)


class StageTracker:
    """What a stage holds to report itself: start, progress, finish, metrics, logs (one cell)."""

    def __init__(self, reporter: Reporter | None, stage: str, *, run_id: str = "", candidate: str = "",
                 cell: str | None = None) -> None:
        self.reporter: Reporter = reporter or NullReporter()
        self.stage, self.run_id, self.candidate = stage, run_id, candidate
        self.cell = cell or f"{candidate or '_data'}/{stage}"
        self.total: int | None = None
        self.done = 0
        self._t0 = time.perf_counter()

    def _common(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cell": self.cell, "stage": self.stage, "candidate": self.candidate}

    def start(self, total: int | None = None) -> "StageTracker":
        self.total, self.done, self._t0 = total, 0, time.perf_counter()
        self.reporter.emit(StageStarted(**self._common(), total=total))
        return self

    def set_total(self, total: int | None) -> None:
        self.total = total
        self.progress(self.done)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.progress(self.done + n, note)

    def progress(self, done: int, note: str = "") -> None:
        self.done = done
        self.reporter.emit(StageProgress(**self._common(), done=done, total=self.total, note=note))

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        self.reporter.emit(Metric(run_id=self.run_id, cell=self.cell, candidate=self.candidate,
                                  name=name, value=float(value), step=step))

    def log(self, message: str, level: str = "info") -> None:
        self.reporter.emit(Log(run_id=self.run_id, cell=self.cell, message=message, level=level))  # type: ignore[arg-type]

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._t0

    def finish(self, status: Status = "ok", reason: str = "", **summary: Any) -> StageFinished:
        ev = StageFinished(**self._common(), status=status, reason=reason, seconds=self.seconds, summary=summary)
        self.reporter.emit(ev)
        return ev
