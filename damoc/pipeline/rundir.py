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

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.errors import DamocError, UnknownNameError
from damoc.events import Event, JsonlWriter, RunFinished, RunStarted, read_events
from damoc.fsutil import atomic_write_json

DATA_CANDIDATE = "_data"       # pseudo-candidate of the shared data stages (filter, compress)
# A run id is a name, never a path: `new_run_id()` makes `20261201-203326-f8d8`; tests and older versions used other
# names of the same alphabet. No separator, no leading dot, so `..`, `/x` and `a/../b` can never name a run.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LATEST = "latest"
LOCK_FILE = "driver.lock"


def _read_marker(path: Path) -> tuple[dict[str, Any] | None, str]:
    """(the JSON object in a marker file or None, why it is unusable: "" when it is fine or absent)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        return None, f"{path.name} unreadable ({e.strerror or e})"
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return None, f"{path.name} is not valid JSON ({type(e).__name__})"
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object"
    return data, ""


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
        """A marker that does not parse (a garbage or truncated `done.json`) is not done: the cell is redone."""
        return self.marker.is_file() and _read_marker(self.marker)[0] is not None

    def result(self) -> dict[str, Any] | None:
        return _read_marker(self.marker)[0]

    def marker_problem(self) -> str:
        """Why this cell's completion marker exists but does not count ("" when it is fine or absent)."""
        return _read_marker(self.marker)[1] if self.marker.exists() else ""

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
        return None if self.done else _read_marker(self.failure_marker)[0]

    @property
    def state(self) -> str:
        """done | failed | cancelled | skipped | running | pending."""
        if self.done:
            return "done"
        f = _read_marker(self.failure_marker)[0]
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
        try:
            atomic_write_json(path / "config.json", config)
            atomic_write_json(path / "run.json", {"run_id": run_id, "created": time.time(), **(meta or {})})
            (path / "events.jsonl").touch()
        except BaseException:     # a full disk, a signal: no half-made run is left to list or resume
            shutil.rmtree(path, ignore_errors=True)
            raise
        return rd

    @classmethod
    def open(cls, runs_dir: Path, run_id: str) -> "RunDir":
        """The run named `run_id` in `runs_dir`: its full id, a unique prefix (like git), or `latest`. Never a
        path: anything else is refused before a file is read, so no command acts on a folder outside runs_dir."""
        return cls(resolve_run_path(runs_dir, run_id))

    # -- contents ----------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return _read_marker(self.path / "config.json")[0] or {}

    @property
    def meta(self) -> dict[str, Any]:
        """run.json; {} when it is missing or unreadable (`problem` says why)."""
        return _read_marker(self.path / "run.json")[0] or {}

    @property
    def problem(self) -> str:
        """Why this run's own files cannot be read ("" when they can): a run listed as unreadable."""
        for name in ("config.json", "run.json", "plan.json"):
            data, why = _read_marker(self.path / name)
            if why:
                return why
            if data is None and name == "config.json":
                return "config.json missing"
        return ""

    def update_meta(self, **values: Any) -> None:
        data, why = _read_marker(self.path / "run.json")
        if why:   # never replace a file we could not read with a partial one
            raise DamocError(f"run {self.run_id}: {why}", f"fix or remove {self.path / 'run.json'}")
        atomic_write_json(self.path / "run.json", {**(data or {}), **values})

    def unusable_markers(self) -> list[tuple[str, str]]:
        """(cell key, why) of every cell whose done.json exists but does not parse: it counts as not done."""
        return [(c.key, why) for c in self.cells() if (why := c.marker_problem())]

    # -- one driver per run ------------------------------------------------------------------------
    def lock(self) -> "DriverLock":
        return DriverLock(self.path / LOCK_FILE)

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
        except (ProcessLookupError, ValueError, TypeError, OverflowError):
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


class RunBusy(DamocError):
    """Another driver holds this run."""


class DriverLock:
    """An OS lock (flock) on `<run>/driver.lock`, held for the whole life of the run's driver.

    The process that starts a driver takes the lock first and hands the open descriptor to the driver (which passes
    it on to its workers), so there is no moment at which a second starter could also win: the kernel releases the
    lock only when the last process holding the descriptor is gone, whatever killed it (SIGKILL included). The pid
    of the process that took it is written into the file, for the message a second starter gets."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        self.write_pid(os.getpid())
        return True

    def adopt(self, fd: int) -> None:
        """The descriptor a parent handed over (inherited, so already holding the lock)."""
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # a no-op on the same open file; raises if not ours
        self.fd = fd

    def write_pid(self, pid: int) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def holder(self) -> int | None:
        try:
            return int(self.path.read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        """Close our descriptor (the lock stays held while a child still has it)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def resolve_run_path(runs_dir: Path, run_id: str) -> Path:
    """The ONE resolver of run ids (`--resume`, `attach`, `compare`, the app, the API): `run_id` must be a name
    (`RUN_ID_RE`), the full id or a unique prefix of a run in `runs_dir`, or `latest`; the folder it names must
    be a direct child of runs_dir once symlinks are resolved. Raises before anything else happens."""
    runs_dir = Path(runs_dir)
    text = str(run_id)
    if text == LATEST:
        paths = list_run_paths(runs_dir)
        if not paths:
            raise DamocError("there is no run yet, so no latest run", "start one with damoc run or damoc demo")
        def created(p: Path) -> float:
            value = (_read_marker(p / "run.json")[0] or {}).get("created")
            return float(value) if isinstance(value, (int, float)) else 0.0

        return max(paths, key=lambda p: (created(p), p.name))
    if not RUN_ID_RE.match(text):
        raise DamocError(f"{text!r} is not a run id (run ids are names like 20261201-203326-f8d8, never paths)",
                         "list the runs with: damoc runs")
    known = [p.name for p in list_run_paths(runs_dir)]
    name = text if text in known else None
    if name is None:
        matches = [k for k in known if k.startswith(text)]
        if len(matches) != 1:               # a unique prefix is enough, like git
            raise UnknownNameError("run", text, matches if len(matches) > 1 else known)
        name = matches[0]
    path = runs_dir / name
    root = runs_dir.resolve()
    if path.resolve().parent != root:
        raise DamocError(f"run {name} points outside the runs directory ({path.resolve()})",
                         f"runs live in {root}; remove the link")
    return path


def list_run_paths(runs_dir: Path) -> list[Path]:
    """Every folder of runs_dir that holds a config.json (a run), by name. Folders that are not runs (or that
    cannot be read) are left out; a run whose files are unreadable is kept (`RunDir.problem` says why)."""
    runs_dir = Path(runs_dir)
    try:
        entries = list(runs_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        raise DamocError(f"cannot list the runs directory {runs_dir}: {e.strerror or e}",
                         "check its permissions (damoc locate)") from e
    out = []
    for p in entries:
        try:
            if RUN_ID_RE.match(p.name) and (p / "config.json").is_file():
                out.append(p)
        except OSError:
            continue
    return sorted(out, key=lambda p: p.name)


def list_runs(runs_dir: Path) -> list[RunDir]:
    return [RunDir(p) for p in list_run_paths(runs_dir)]
