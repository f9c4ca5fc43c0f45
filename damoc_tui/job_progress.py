"""Reporters that turn a long registry job's stage events (a zoo build, a pull) into JobProgress messages, posted
thread-safely from the worker thread that runs the job."""
from __future__ import annotations

from damoc import facade
from damoc.events import Event, StageProgress, StageStarted
from damoc_tui import bridge
from damoc_tui.messages import JobProgress


class JobReporter:
    """A damoc Reporter that turns a job's stage events into JobProgress messages (thread-safe posts)."""

    def __init__(self, post: bridge.Post, job: str) -> None:
        self.post, self.job = post, job

    def emit(self, event: Event) -> None:
        if isinstance(event, (StageStarted, StageProgress)):
            done = event.done if isinstance(event, StageProgress) else 0
            step = f" {done}/{event.total}" if event.total else ""
            who = f"{event.candidate} " if event.candidate else ""
            self.post(JobProgress(self.job, done, event.total, f"{who}{event.stage}{step}"))


class PullProgress:
    """A damoc Reporter that turns the pull's stage events into JobProgress messages (thread-safe posts)."""

    def __init__(self, post: bridge.Post) -> None:
        self.post = post

    def emit(self, event: Event) -> None:
        if isinstance(event, StageProgress):
            done, note = event.done, event.note
        elif isinstance(event, StageStarted):
            done, note = 0, ""
        else:
            return
        text = f"{event.stage} {facade.human_bytes(done)}" + (f" / {facade.human_bytes(event.total)}"
                                                              if event.total else "")
        self.post(JobProgress("pull", done, event.total, text + (f" {note}" if note else "")))
