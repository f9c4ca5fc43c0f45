"""Rich console reporter: progress bars and one line per finished stage, driven only by events."""
from __future__ import annotations

from typing import Any

from damoc.events import (CandidateScored, Event, Log, Metric, RunFinished, RunStarted, StageFinished,
                          StageProgress, StageStarted)
from damoc.units import fmt_duration

_STATUS_STYLE = {"ok": "green", "failed": "bold red", "cancelled": "yellow", "skipped": "cyan"}


class ConsoleReporter:
    """Renders events on a rich console (stderr by default, so `--json` output on stdout stays clean)."""

    def __init__(self, console: Any = None, *, show_logs: bool = True, transient: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn)

        self.console = console or Console(stderr=True)
        self.show_logs = show_logs
        self.progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn(),
                                 console=self.console, transient=transient)
        self._tasks: dict[str, Any] = {}
        self._began: dict[str, tuple[float, int]] = {}    # cell -> (event time, steps done) of its first progress
        self._started = False

    def __enter__(self) -> "ConsoleReporter":
        self.progress.start()
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False

    def _task(self, cell: str, total: int | None = None) -> Any:
        if cell not in self._tasks:
            self._tasks[cell] = self.progress.add_task(cell, total=total, note="")
        return self._tasks[cell]

    def _eta(self, event: StageProgress) -> float | None:
        """Seconds left in a stage, from the throughput its own events measured (event times, so a replayed
        backlog gives the same figure as a live run); None until a second of progress has been seen."""
        t0, done0 = self._began.setdefault(event.cell, (event.t, event.done))
        if not event.total or event.done <= done0 or event.t - t0 < 1.0:
            return None
        rate = (event.done - done0) / (event.t - t0)
        return max(0.0, (event.total - event.done) / rate)

    def emit(self, event: Event) -> None:
        p = self.progress
        if isinstance(event, RunStarted):
            verb = "resumed" if event.resumed else "started"
            p.console.print(f"[bold]run {event.run_id}[/] {verb} ({event.mode}, {len(event.candidates)} candidates)")
        elif isinstance(event, StageStarted):
            self._task(event.cell, event.total)
        elif isinstance(event, StageProgress):
            tid = self._task(event.cell, event.total)
            eta = self._eta(event)
            note = event.note[:40] + (f" · ETA {fmt_duration(eta)}" if eta is not None else "")
            p.update(tid, completed=event.done, total=event.total, note=note)
        elif isinstance(event, StageFinished):
            tid = self._task(event.cell)
            task = p.tasks[[t.id for t in p.tasks].index(tid)]
            if event.status == "ok":
                p.update(tid, completed=task.total or task.completed or 1, total=task.total or task.completed or 1)
            p.stop_task(tid)
            style = _STATUS_STYLE.get(event.status, "white")
            why = f": {event.reason}" if event.reason else ""
            p.console.print(f"[{style}]{event.status:>9}[/] {event.cell} ({event.seconds:.1f}s){why}")
        elif isinstance(event, Metric):
            if event.name.endswith("loss") and event.cell in self._tasks:
                p.update(self._tasks[event.cell], note=f"loss {event.value:.3f}")
        elif isinstance(event, CandidateScored):
            se = f" ± {event.stderr:.3f}" if event.stderr is not None else ""
            p.console.print(f"[bold magenta]   scored[/] {event.candidate}: {event.metric} = {event.score:.4f}{se}")
        elif isinstance(event, Log) and self.show_logs and event.level != "debug":
            style = {"warning": "yellow", "error": "red"}.get(event.level, "dim")
            p.console.print(f"[{style}]{event.message}[/]")
        elif isinstance(event, RunFinished):
            style = _STATUS_STYLE.get(event.status, "white")
            why = f": {event.reason}" if event.reason else ""
            p.console.print(f"[{style}]run {event.run_id} {event.status}[/] in {fmt_duration(event.seconds)}{why}")
