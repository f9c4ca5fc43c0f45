"""The run directory: the single source of truth of a run.

    runs/<run_id>/
        config.json          frozen, fully resolved configuration
        events.jsonl         append-only event log (every process appends whole lines)
        run.json             run metadata: mode, candidates, created, pid of the driver
        cells/<candidate>/<stage>/
            ...artifacts...
            done.json        completion marker, written last and atomically

Resume = run every cell whose `done.json` does not exist. Cells are idempotent: a cell that was interrupted half-way
is simply redone (its folder is cleared first).
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.errors import DamocError, UnknownNameError
from damoc.events import Event, JsonlWriter, RunFinished, RunStarted, read_events
from damoc.fsutil import atomic_write_json, read_json

DATA_CANDIDATE = "_data"       # pseudo-candidate of the shared data stages (filter, compress)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class Cell:
    """One (candidate x stage) unit of work and its folder."""

    run: "RunDir"
    candidate: str
    stage: str

    @property
    def key(self) -> str:
        return f"{self.candidate}/{self.stage}"

    @property
    def path(self) -> Path:
        return self.run.path / "cells" / _safe(self.candidate) / _safe(self.stage)

    @property
    def marker(self) -> Path:
        return self.path / "done.json"

    @property
    def done(self) -> bool:
        return self.marker.is_file()

    def result(self) -> dict[str, Any] | None:
        return read_json(self.marker)

    def prepare(self) -> Path:
        """Clear any half-written output of an interrupted attempt and return the (empty) folder."""
        if self.path.exists() and not self.done:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def mark_done(self, status: str = "ok", **summary: Any) -> None:
        atomic_write_json(self.marker, {"status": status, "finished": time.time(), **summary})
        for stale in (self.failure_marker, self.running_marker):
            stale.unlink(missing_ok=True)

    # -- failure and liveness markers (a failed cell has no done.json, so resume retries it) ---------
    @property
    def failure_marker(self) -> Path:
        return self.path / "failed.json"

    @property
    def running_marker(self) -> Path:
        return self.path / "running.json"

    def mark_running(self, **info: Any) -> None:
        atomic_write_json(self.running_marker, {"pid": os.getpid(), "started": time.time(), **info})

    def mark_failed(self, status: str = "failed", reason: str = "", **summary: Any) -> None:
        """status: failed | cancelled | skipped (a dependency failed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.failure_marker, {"status": status, "reason": reason, "finished": time.time(),
                                                **summary})
        self.running_marker.unlink(missing_ok=True)

    def failure(self) -> dict[str, Any] | None:
        return None if self.done else read_json(self.failure_marker)

    @property
    def state(self) -> str:
        """done | failed | cancelled | skipped | running | pending."""
        if self.done:
            return "done"
        f = read_json(self.failure_marker)
        if f:
            return str(f.get("status", "failed"))
        if self.running_marker.is_file():
            return "running"
        return "pending"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name) or "_"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name
        self._writer: JsonlWriter | None = None

    # -- creation and discovery --------------------------------------------------------------------
    @classmethod
    def create(cls, runs_dir: Path, config: dict[str, Any], *, run_id: str | None = None,
               meta: dict[str, Any] | None = None) -> "RunDir":
        run_id = run_id or new_run_id()
        path = Path(runs_dir) / run_id
        if path.exists():
            raise DamocError(f"run {run_id} already exists at {path}", "pick another run id or resume it")
        path.mkdir(parents=True)
        rd = cls(path)
        atomic_write_json(path / "config.json", config)
        atomic_write_json(path / "run.json", {"run_id": run_id, "created": time.time(), **(meta or {})})
        (path / "events.jsonl").touch()
        return rd

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> "RunDir":
        path = Path(runs_dir) / run_id
        if not (path / "config.json").is_file():
            known = [p.name for p in list_run_paths(runs_dir)]
            matches = [k for k in known if k.startswith(run_id)]
            if len(matches) == 1:               # a unique prefix is enough, like git
                return cls(Path(runs_dir) / matches[0])
            raise UnknownNameError("run", run_id, known)
        return cls(path)

    # -- contents ----------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return read_json(self.path / "config.json", {})

    @property
    def meta(self) -> dict[str, Any]:
        return read_json(self.path / "run.json", {})

    def update_meta(self, **values: Any) -> None:
        atomic_write_json(self.path / "run.json", {**self.meta, **values})

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    def emit(self, event: Event) -> None:
        if self._writer is None:
            self._writer = JsonlWriter(self.events_path)
        self._writer.emit(event)

    def events(self) -> list[Event]:
        return read_events(self.events_path)[0]

    def tail(self) -> "EventTail":
        """A reader of what is appended to events.jsonl from now on (from the start of the file)."""
        return EventTail(self.events_path)

    def follow(self, *, poll: float = 0.25, stop: Callable[[], bool] | None = None,
               until_finished: bool = True) -> Iterator[Event]:
        """Yield events as they are appended (tail -f); ends at the last session's `run_finished` (a resumed run
        has one per session) once the driver is gone, or when `stop()` is true."""
        tail = self.tail()
        while True:
            events = tail.read()
            yield from events
            if stop is not None and stop():
                return
            # the driver clears its pid before it appends run_finished, so "no driver and nothing left to read"
            # is the end: finished, cancelled, or died (interrupted). An earlier session's run_finished does not
            # end the stream while a resumed driver is alive.
            if until_finished and not events and not self.is_alive():
                last = tail.read()
                if not last:
                    return
                yield from last
            if not events:
                time.sleep(poll)

    def seconds(self) -> float | None:
        """Wall seconds of the run over all its sessions, process start-up included: what the driver recorded
        once it ended, else the sessions' own `run_finished` times; a live run counts up to now. None when no
        session ever started or finished."""
        recorded = self.meta.get("seconds")
        alive = self.is_alive()
        if recorded is not None and not alive:
            return float(recorded)
        events = self.events()
        if alive:
            starts = [e.t for e in events if isinstance(e, RunStarted)]
            return float(recorded or 0.0) + (time.time() - starts[-1] if starts else 0.0)
        ends = [e.seconds for e in events if isinstance(e, RunFinished)]
        return float(sum(ends)) if ends else None

    def cell(self, candidate: str, stage: str) -> Cell:
        return Cell(self, candidate, stage)

    def cells(self) -> list[Cell]:
        out = []
        root = self.path / "cells"
        if root.is_dir():
            for cand in sorted(p for p in root.iterdir() if p.is_dir()):
                for st in sorted(p for p in cand.iterdir() if p.is_dir()):
                    out.append(Cell(self, cand.name, st.name))
        return out

    def pending(self, cells: Iterable[Cell]) -> list[Cell]:
        return [c for c in cells if not c.done]

    # -- liveness ----------------------------------------------------------------------------------
    def set_driver_pid(self, pid: int | None) -> None:
        self.update_meta(pid=pid)

    def is_alive(self) -> bool:
        """True while the process driving this run still exists."""
        pid = self.meta.get("pid")
        if not pid:
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # a zombie (exited child not yet reaped) is not alive
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ", 1)[1][:1] != "Z"
        except (FileNotFoundError, IndexError):
            return True

    def status(self) -> str:
        """running | finished | failed | cancelled | interrupted (driver gone without a run_finished)."""
        last = None
        events = self.events()
        for e in events:
            if isinstance(e, RunFinished):
                last = e
            elif isinstance(e, RunStarted):      # a resumed session: an earlier run_finished no longer counts
                last = None
        if self.is_alive():
            return "running"
        if last is None:
            return "interrupted" if events else "created"
        return {"ok": "finished"}.get(last.status, last.status)


class EventTail:
    """Reads what was appended to an events.jsonl since the last read: a stat per call, a read only when the
    file grew (whole lines only: a line being written is left for the next read); a file that shrank was
    replaced, and is read again from its start. The one tailer of the CLI (`RunDir.follow`) and the app."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[Event]:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size < self.offset:
            self.offset = 0
        if size == self.offset:
            return []
        events, self.offset = read_events(self.path, self.offset)
        return events


def list_run_paths(runs_dir: Path) -> list[Path]:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted((p for p in runs_dir.iterdir() if (p / "config.json").is_file()), key=lambda p: p.name)


def list_runs(runs_dir: Path) -> list[RunDir]:
    return [RunDir(p) for p in list_run_paths(runs_dir)]
