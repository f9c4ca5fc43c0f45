"""What the run screen shows, folded from a run's events (pure: no Textual, no file access).

This is display state only (which stage each candidate is in, its progress, loss curve, logs). The ranking itself is
the pipeline's (`damoc.pipeline.api.leaderboard`); until its rows arrive, candidates are ordered by their scored value.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from damoc.events import (CandidateScored, Event, Log, Metric, RunFinished, RunStarted, StageFinished, StageProgress,
                          StageStarted)
from damoc.facade import DATA_CANDIDATE

LOG_KEEP = 200          # log lines kept per candidate: enough to read, bounded for week-long runs
LOSS_KEEP = 400
SHORT_NAMES = {"evaluate": "eval"}     # table cells are 13 columns wide at 80


@dataclass
class StageState:
    name: str
    status: str = "running"          # running | ok | failed | cancelled | skipped
    done: int = 0
    total: int | None = None
    seconds: float = 0.0
    reason: str = ""
    note: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    started: float | None = None     # event times (the driver's clock): the measured throughput of this stage
    updated: float | None = None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left in a running stage with a known total, from its measured throughput so far (the mean time
        per step since it started, times the steps left), counted down since the last progress event."""
        if self.status != "running" or not self.total or self.done <= 0 or self.started is None \
                or self.updated is None or self.updated - self.started < 1.0:
            return None                      # under a second measured: no throughput to speak of yet
        left = (self.updated - self.started) / self.done * max(0, self.total - self.done)
        return max(0.0, left - max(0.0, (now or self.updated) - self.updated))

    @property
    def fraction(self) -> float | None:
        if self.status == "ok":
            return 1.0
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    @property
    def short(self) -> str:
        """The stage's own name: `finetune-full-s0/finetune` -> `finetune`."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.name.rpartition("/")[0]

    def label(self) -> str:
        """Short text for a table cell: `finetune 34/120`, `prune ok`, `eval failed`."""
        name = SHORT_NAMES.get(self.short, self.short)
        if self.status == "running":
            if self.total:
                return f"{name} {self.done}/{self.total}"
            return f"{name}…"
        return f"{name} {self.status}"


@dataclass
class CandidateState:
    name: str
    stages: dict[str, StageState] = field(default_factory=dict)
    score: float | None = None
    stderr: float | None = None
    metric: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))

    @property
    def current(self) -> StageState | None:
        """The innermost running stage (a fine-tune cell's `finetune` step counter), else the last one that ended."""
        running = [s for s in self.stages.values() if s.status == "running"]
        if running:
            return running[-1]
        top = self.top_stages()
        return top[-1] if top else None

    def top_stages(self) -> list[StageState]:
        """The cells (not their sub-stages), in the order they started."""
        return [s for s in self.stages.values() if not s.parent]

    def live_label(self, st: StageState) -> str:
        """A cell's label, with its running sub-stage's progress when it has one."""
        if st.status == "running":
            subs = [s for s in self.stages.values() if s.parent == st.name and s.status == "running"]
            if subs:
                return subs[-1].label()
        return st.label()

    @property
    def status(self) -> str:
        states = [s.status for s in self.stages.values()]
        if not states:
            return "queued"
        if "failed" in states:
            return "failed"
        if "running" in states:
            return "running"
        if "cancelled" in states:
            return "cancelled"
        return "scored" if self.score is not None else "waiting"

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages.values())

    def pruning(self) -> str:
        """The pruning/merge outcome as the prune cell reported it: `3/24 merged` (layers pruned of before, the
        leaderboard's and the CLI's form, so the cell does not change when the leaderboard file takes over),
        `skipped: no Base`."""
        st = self.stages.get("prune")
        if st is None:
            return ""
        if st.status == "skipped":
            return f"skip: {st.reason}" if st.reason else "skipped"
        if st.status != "ok":
            return st.status
        s = st.summary
        before, after = s.get("layers_before"), s.get("layers_after")
        out = f"{before - after}/{before}" if isinstance(before, int) and isinstance(after, int) else "pruned"
        if s.get("merge_rule"):
            return out + " merged"
        return out + (" no merge" if "skip_reason" in s else "")


@dataclass
class RunState:
    run_id: str
    mode: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    candidates: dict[str, CandidateState] = field(default_factory=dict)
    data: CandidateState = field(default_factory=lambda: CandidateState(DATA_CANDIDATE))
    status: str = "created"
    reason: str = ""
    started: float | None = None
    finished: float | None = None
    seconds: float = 0.0
    resumes: int = 0
    events_seen: int = 0
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_KEEP))

    def candidate(self, name: str) -> CandidateState:
        if not name or name == DATA_CANDIDATE:
            return self.data
        if name not in self.candidates:
            self.candidates[name] = CandidateState(name)
        return self.candidates[name]

    def apply(self, event: Event) -> str | None:
        """Fold one event in; returns the candidate it touched ("_data" for shared stages, "" for the run)."""
        self.events_seen += 1
        if isinstance(event, RunStarted):
            self.mode = event.mode or self.mode
            self.config = event.config or self.config
            self.status, self.reason, self.finished = "running", "", None
            self.started = self.started or event.t
            self.resumes += int(event.resumed)
            for name in event.candidates:
                self.candidate(name)
            return ""
        if isinstance(event, RunFinished):
            self.status = {"ok": "finished"}.get(event.status, event.status)
            self.reason, self.finished, self.seconds = event.reason, event.t, event.seconds
            for cand in [self.data, *self.candidates.values()]:   # a stage left running was interrupted
                for st in cand.stages.values():
                    if st.status == "running" and event.status != "ok":
                        st.status = "cancelled" if event.status == "cancelled" else "failed"
            return ""
        if isinstance(event, (StageStarted, StageProgress, StageFinished)):
            cand = self.candidate(event.candidate or _cell_candidate(event.cell))
            stage = _stage_key(event.cell, event.stage)
            st = cand.stages.get(stage)
            if st is None or isinstance(event, StageStarted):
                total = None if isinstance(event, StageFinished) else event.total
                st = cand.stages[stage] = StageState(stage, total=total, started=event.t, updated=event.t)
                cand.stages[stage] = cand.stages.pop(stage)          # keep stages in the order they (re)started
            if isinstance(event, StageProgress):
                st.status, st.done, st.note, st.updated = "running", event.done, event.note, event.t
                st.total = event.total if event.total is not None else st.total
            elif isinstance(event, StageFinished):
                st.status, st.reason, st.seconds, st.summary = event.status, event.reason, event.seconds, event.summary
                if event.reason:
                    cand.logs.append(f"{stage} {event.status}: {event.reason}")
            return cand.name
        if isinstance(event, Metric):
            cand = self.candidate(event.candidate or _cell_candidate(event.cell))
            if event.name.endswith("loss") and event.name.startswith("train"):
                cand.losses.append(event.value)
                del cand.losses[:-LOSS_KEEP]
            return cand.name
        if isinstance(event, CandidateScored):
            cand = self.candidate(event.candidate)
            cand.score, cand.stderr, cand.metric, cand.details = event.score, event.stderr, event.metric, event.details
            return cand.name
        if isinstance(event, Log):
            name = _cell_candidate(event.cell)
            line = f"{event.level}: {event.message}" if event.level != "info" else event.message
            if name:
                self.candidate(name).logs.append(line)
                return name
            self.logs.append(line)
            return ""
        return None

    def eta(self, now: float) -> float | None:
        """Seconds left in the run, from what it measured: each candidate's cells still to run take the mean time
        of the same kind of cell already finished (prune, fine-tune), a running one its own stage ETA or that mean
        less the time it has run. None until one cell of every kind still to come has finished."""
        done: dict[str, list[float]] = {}
        for cand in self.candidates.values():
            for st in cand.top_stages():
                if st.status == "ok" and st.seconds:
                    done.setdefault(_kind(st.name), []).append(st.seconds)
        mean = {k: sum(v) / len(v) for k, v in done.items()}
        kinds = [k for k in ("prune", "finetune", "eval") if k in mean or any(
            _kind(s.name) == k for c in self.candidates.values() for s in c.top_stages())]
        left = 0.0
        for cand in self.candidates.values():
            tops = {_kind(s.name): s for s in cand.top_stages()}
            for kind in kinds:
                st = tops.get(kind)
                if st is not None and st.status in ("ok", "skipped"):
                    continue
                if st is not None and st.status != "running":
                    continue                         # failed or cancelled: not coming back in this session
                if kind not in mean:
                    return None
                if st is None:
                    if cand.status in ("failed", "cancelled") or (kind == "prune" and "prune" not in tops
                                                                  and any(k != "prune" for k in tops)):
                        continue
                    left += mean[kind]
                    continue
                sub = [s.eta(now) for s in cand.stages.values() if s.parent == st.name and s.status == "running"]
                sub = [x for x in sub if x is not None]
                left += sub[-1] if sub else max(0.0, mean[kind] - (now - (st.started or now)))
        return left if left >= 1.0 else None         # "0s left" while work remains would be a wrong promise

    def ranking(self) -> list[CandidateState]:
        """Scored candidates best first, then the others in their run order (the live view before the pipeline's
        leaderboard rows arrive)."""
        scored = sorted((c for c in self.candidates.values() if c.score is not None), key=lambda c: -c.score)
        return scored + [c for c in self.candidates.values() if c.score is None]


def _kind(stage: str) -> str:
    """`finetune-full-s0` -> `finetune`: the kind of a candidate's cell."""
    return stage.split("/")[0].split("-")[0]


def _stage_key(cell: str, stage: str) -> str:
    """`cand/finetune-full-s0/finetune` -> `finetune-full-s0/finetune`; a bare stage name when there is no cell."""
    if "/" in cell:
        return cell.partition("/")[2]
    return stage or cell


def _cell_candidate(cell: str) -> str:
    return cell.partition("/")[0] if "/" in cell else ""


def sparkline(values: list[float], width: int = 10) -> str:
    """Unicode block sparkline of the last `width` points (min..max scaled), for a table cell."""
    blocks = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    vals = values[-width:] if len(values) <= width else _downsample(values, width)
    lo, hi = min(vals), max(vals)
    span = hi - lo
    return "".join(blocks[int((v - lo) / span * (len(blocks) - 1)) if span else 0] for v in vals)


def _downsample(values: list[float], width: int) -> list[float]:
    """Mean of `width` equal buckets: the whole curve's shape, not only its tail."""
    n = len(values)
    out = []
    for i in range(width):
        a, b = i * n // width, max(i * n // width + 1, (i + 1) * n // width)
        chunk = values[a:b]
        out.append(sum(chunk) / len(chunk))
    return out
