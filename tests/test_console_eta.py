"""`damoc run` / `attach` progress: an ETA per stage from the throughput its events measured, and one way to write
a duration (damoc.units, shared with the app)."""
from __future__ import annotations

import io

from rich.console import Console

from damoc.console import ConsoleReporter
from damoc.events import RunFinished, StageProgress, StageStarted
from damoc.units import fmt_duration


def test_durations_read_the_same_everywhere():
    from damoc.facade import fmt_duration as facade_fmt

    assert facade_fmt is fmt_duration
    assert [fmt_duration(s) for s in (None, 0.4, 42, 92, 3600 + 5 * 60 + 1)] == ["-", "0s", "42s", "1m32s", "1h05m"]


def test_eta_comes_from_event_times_not_the_wall_clock():
    rep = ConsoleReporter(Console(file=io.StringIO(), width=120))
    rep.emit(StageStarted(cell="a/finetune", stage="finetune", total=100, t=1000.0))
    assert rep._eta(StageProgress(cell="a/finetune", stage="finetune", done=0, total=100, t=1000.0)) is None
    assert rep._eta(StageProgress(cell="a/finetune", stage="finetune", done=5, total=100, t=1000.5)) is None  # < 1 s
    # 25 steps in 10 s of event time: 75 left at 2.5 steps/s = 30 s, however fast the events are replayed
    assert rep._eta(StageProgress(cell="a/finetune", stage="finetune", done=25, total=100, t=1010.0)) == 30.0
    out = io.StringIO()
    with ConsoleReporter(Console(file=out, width=120)) as live:
        live.emit(RunFinished(run_id="r", status="ok", seconds=92.3))
    assert "in 1m32s" in out.getvalue()
