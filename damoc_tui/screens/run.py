"""The live view of one run: per-candidate stage progress, the leaderboard (updated cell by cell), loss sparklines,
the logs of the selected candidate, cancel and resume.

The run is a separate process; this screen only tails its events.jsonl (bridge.follow_run) and asks the library to
cancel or resume it. Leaving the screen, quitting the app or losing SSH leaves the run going.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, RichLog, Sparkline, Static
from textual.worker import get_current_worker

from damoc import facade
from damoc.errors import DamocError
from damoc.facade import DATA_CANDIDATE
from damoc_tui import bridge
from damoc_tui.messages import (HandoffReady, JobDone, LeaderboardCopied, LeaderboardExported, LeaderboardRows,
                                RunCancelled, RunEvents, RunLiveness, RunProgress, RunResumed, RunSnapshot)
from damoc_tui.runstate import CandidateState, RunState, sparkline
from damoc_tui.screens.modals import ChoiceScreen, ConfirmScreen, TextScreen, failed, notify_error
from damoc_tui.widgets.synced_table import SyncedTable

# (key, label, width): the narrow set fits 80 columns, the wide one is used from 110 columns on
BOARD_COLUMNS = [("rank", "#", 2), ("name", "candidate", 22), ("score", "score", 6), ("gap", "gap", 6),
                 ("stage", "stage", 18), ("loss", "loss", 10), ("prune", "pruned", 12), ("status", "status", 9)]
BOARD_COLUMNS_NARROW = [("rank", "#", 2), ("name", "candidate", 13), ("score", "score", 6), ("gap", "gap", 6),
                        ("stage", "stage", 13), ("loss", "loss", 5), ("prune", "pruned", 10), ("status", "status", 7)]
LOG_SHOWN = 60             # log lines written when the selection changes (older ones: the run's events.jsonl)
STATUS_STYLE = {"ok": "green", "finished": "green", "scored": "green", "running": "bold", "failed": "red",
                "cancelled": "yellow", "interrupted": "yellow", "skipped": "cyan", "queued": "dim", "waiting": "dim"}


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_score(score: Any) -> str:
    """At most 6 characters whatever the metric's scale (F1 in 0..1, BERTScore+ROUGE in 0..100)."""
    if not isinstance(score, (int, float)):
        return ""
    a = abs(score)
    return f"{score:.1f}" if a >= 1000 else f"{score:.2f}" if a >= 10 else f"{score:.3f}" if a >= 1 else f"{score:.4f}"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def stage_cell(cand: CandidateState) -> str:
    """What a candidate is doing: the running step with its progress, the failed stage, or done/queued."""
    running = [s for s in cand.stages.values() if s.status == "running"]
    if running:
        return running[-1].label()
    bad = [s for s in cand.stages.values() if s.status in ("failed", "cancelled")]
    if bad:
        return f"{bad[0].short} {bad[0].status}"
    if not cand.stages:
        return "queued"
    return "done" if cand.score is not None else "waiting"


def row_name(row: dict[str, Any]) -> str:
    return str(row.get("name") or row.get("candidate") or "")


def _prune_cell(row: dict[str, Any]) -> str:
    """`layers` ("2/24": pruned of before) and `merge` ("applied (rule)" / "skipped: why") of a leaderboard row,
    in 10 columns; the full merge text is in the detail pane."""
    merge = str(row.get("merge") or "")
    layers = str(row.get("layers") or "")
    if merge.startswith("skipped"):
        return "skipped"
    if layers:
        return layers + (" merged" if merge.startswith("applied") else "")
    return merge


class RunScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="run.back"),
        Binding("x", "cancel_run", "Cancel run", id="run.cancel"),
        Binding("r", "resume_run", "Resume", id="run.resume"),
        Binding("e", "export", "Export", id="run.export"),
        Binding("y", "copy", "Copy", id="run.copy"),
        Binding("h", "handoff", "Hand-off", id="run.handoff"),
        Binding("j", "cursor_down", "Down", id="run.down", show=False),
        Binding("k", "cursor_up", "Up", id="run.up", show=False),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.state = RunState(run_id)
        self.rows: list[dict[str, Any]] = []      # the pipeline's leaderboard rows, when it has any
        self.alive = False
        self._selected: str | None = None
        self.batches = 0                           # batches applied (tests and the latency benchmark read it)
        self._dirty: set[str | None] = set()
        self._flush_pending = False
        self._log_count = 0

    # -- layout ---------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="run-title", classes="bar")
        yield Static(id="run-data", classes="bar dim-bar")
        narrow = self.app.size.width < 110
        yield SyncedTable(BOARD_COLUMNS_NARROW if narrow else BOARD_COLUMNS, row_key="name", id="board")
        with Horizontal(id="run-detail"):
            with Vertical(id="cand-pane"):
                yield Static(id="cand-summary")
                yield Sparkline([], id="cand-loss")
            yield RichLog(id="cand-log", max_lines=400, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        try:
            self.rd = facade.open_run(self.settings, self.run_id)
        except DamocError as e:
            notify_error(self.app, e.message, e.hint or "")
            self.app.pop_screen()
            return
        self.run_id = self.rd.run_id
        self.state.run_id = self.run_id
        self.state.config = self.rd.config
        self.query_one("#board", SyncedTable).focus()
        self._render_header()
        self.tail()

    @work(thread=True, group="run-tail", exclusive=True, exit_on_error=False, description="follow events.jsonl")
    def tail(self) -> None:
        stop = get_current_worker().cancelled_event     # set when the screen goes away or the app exits
        bridge.follow_run(self.rd, self.post_message, stop, refresh_hz=self.settings.refresh_hz)

    # -- events from the bridge ------------------------------------------------------------------------
    def on_run_events(self, message: RunEvents) -> None:
        self.batches += 1
        self._mark({self.state.apply(e) for e in message.events})

    def on_run_snapshot(self, message: RunSnapshot) -> None:
        config = self.state.config
        self.state = message.state
        self.state.config = self.state.config or config
        self.batches += 1
        self._mark({"", DATA_CANDIDATE, *self.state.candidates})

    def on_run_progress(self, message: RunProgress) -> None:
        self._mark({self.state.apply(message.event)})

    def on_run_liveness(self, message: RunLiveness) -> None:
        self.alive = message.alive
        if not message.alive and self.state.status == "running":
            self.state.status = message.status
        self._render_header()

    def on_leaderboard_rows(self, message: LeaderboardRows) -> None:
        self.rows = message.rows
        self._mark(set(self.state.candidates))

    def _mark(self, touched: set[str | None]) -> None:
        """Fold now, draw once: the messages of one batch (a run of events, the progress of each cell) are already
        queued, so the redraw scheduled behind them happens once per batch, not once per message."""
        self._dirty |= touched
        if not self._flush_pending:
            self._flush_pending = True
            self.call_later(self._flush)

    def _flush(self) -> None:
        touched, self._dirty, self._flush_pending = self._dirty, set(), False
        self._refresh(touched)

    def _refresh(self, touched: set[str | None]) -> None:
        self._render_header()
        if DATA_CANDIDATE in touched or "" in touched:
            self._render_data()
        self.query_one("#board", SyncedTable).sync(self.board_rows())
        sel = self._highlighted()
        if sel is not None and (sel in touched or self._selected != sel):
            self._render_candidate(sel)

    # -- rendering ----------------------------------------------------------------------------------------
    def board_rows(self) -> list[dict[str, Any]]:
        """One row per candidate in the pipeline's order (rank, score, gap, merge from its leaderboard, recomputed
        when a cell finishes), with the live stage, progress and loss from the events in between."""
        by_name = {row_name(r): r for r in self.rows if row_name(r)}
        order = list(by_name) + [c.name for c in self.state.ranking() if c.name not in by_name]
        ranked = [c for c in self.state.ranking() if c.score is not None]
        out = []
        for name in order:
            cand = self.state.candidate(name)
            r = by_name.get(name)
            if r is not None:
                score, rank, gap, close = r.get("score"), r.get("rank"), r.get("gap"), bool(r.get("too_close"))
                status = cand.status if cand.status in ("running", "queued") and self.alive else str(r.get("status"))
                prune = _prune_cell(r) or cand.pruning()
            else:                 # not ranked by the pipeline yet: the live fold
                score = cand.score
                rank = ranked.index(cand) + 1 if cand in ranked else None
                gap = (ranked[0].score - score) if score is not None and ranked else None
                close, status, prune = False, cand.status, cand.pruning()
            out.append({
                "name": name,
                "rank": str(rank) if rank is not None and score is not None else "",
                "score": fmt_score(score),
                "gap": ("≈" if close else "") + (f"-{gap:.3f}" if gap else ("lead" if rank == 1 else ""))
                if isinstance(gap, (int, float)) else "",
                "stage": stage_cell(cand),
                "loss": sparkline(cand.losses, self._loss_width),
                "prune": prune,
                "status": status_text(status),
            })
        return out

    @property
    def _loss_width(self) -> int:
        return 10 if self.app.size.width >= 110 else 5

    def _render_header(self) -> None:
        st = self.state
        status = "running" if self.alive else (st.status if st.status != "created" else self.rd.status())
        live = "● live" if self.alive else "○ not running"
        elapsed = (st.finished or time.time()) - st.started if st.started else None
        cands = len(st.candidates) or len(self.rd.config.get("candidates", []))
        txt = (f"[b]run {escape(self.run_id)}[/b]  {escape(st.mode or self.rd.config.get('mode', ''))}  "
               f"[b]{escape(status)}[/b]  {live}  {fmt_seconds(elapsed)}  {cands} candidates")
        if st.resumes:
            txt += f"  resumed ×{st.resumes}"
        if st.reason:
            txt += f"  [dim]{escape(st.reason[:60])}[/]"
        self.query_one("#run-title", Static).update(txt, layout=False)      # one fixed line: no re-layout

    def _render_data(self) -> None:
        parts = []
        for st in self.state.data.stages.values():
            secs = f" {fmt_seconds(st.seconds)}" if st.status != "running" and st.seconds else ""
            parts.append(escape(st.label()) + secs)
        line = "data: " + (" · ".join(parts) if parts else "waiting")
        if self.state.logs:
            line += f"  [dim]{escape(self.state.logs[-1][:50])}[/]"
        self.query_one("#run-data", Static).update(line, layout=False)

    def _highlighted(self) -> str | None:
        return self.query_one("#board", SyncedTable).highlighted_key

    def _render_candidate(self, name: str) -> None:
        cand: CandidateState = self.state.candidate(name)
        lines = [f"[b]{escape(name)}[/b]  {escape(cand.status)}"
                 + (f"  {cand.metric} {cand.score:.4f}" if cand.score is not None else "")
                 + (f" ± {cand.stderr:.4f}" if cand.stderr else "")]
        for st in cand.stages.values():
            if st.parent and st.short == st.parent.rsplit("/", 1)[-1]:
                continue                      # a module's own tracker inside the cell of the same name
            why = f": {escape(st.reason)}" if st.reason else ""
            indent = "  " if st.parent else ""
            label = st.name if not st.parent else st.label()
            if not st.parent:
                label = st.label().replace(st.short, st.name, 1)
            lines.append(f"{indent}{escape(label)} {fmt_seconds(st.seconds) if st.seconds else ''}{why}")
        row = next((r for r in self.rows if row_name(r) == name), None)
        if row and row.get("merge"):
            lines.append(f"merge: {escape(str(row['merge']))}")
        if cand.losses:
            lines.append(f"train loss {cand.losses[0]:.3f} → {cand.losses[-1]:.3f} ({len(cand.losses)} pts)")
        self.query_one("#cand-summary", Static).update("\n".join(lines), layout=False)
        self.query_one("#cand-loss", Sparkline).data = list(cand.losses)
        log = self.query_one("#cand-log", RichLog)
        logs = list(cand.logs)
        if self._selected != name:
            log.clear()
            self._selected = name
            new = logs[-LOG_SHOWN:]                 # one write of the tail: moving the cursor stays cheap
        else:
            new = logs[self._log_count:] if self._log_count <= len(logs) else logs[-LOG_SHOWN:]
        if new:
            log.write(Text("\n".join(new)))
        self._log_count = len(logs)

    @on(DataTable.RowHighlighted, "#board")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._render_candidate(str(event.row_key.value))

    # -- actions ---------------------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cursor_down(self) -> None:
        self.query_one("#board", SyncedTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#board", SyncedTable).action_cursor_up()

    def action_cancel_run(self) -> None:
        if not self.alive:
            self.notify("this run is not running", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._job(RunCancelled, lambda: facade.cancel_run(self.settings, self.run_id))
        self.app.push_screen(ConfirmScreen(f"Cancel run {self.run_id}?",
                                           "Finished cells are kept; r resumes from where it stopped.",
                                           yes="Cancel run", no="Keep running"), answer)

    def action_resume_run(self) -> None:
        if self.alive:
            self.notify("this run is already running", severity="warning")
            return
        self._job(RunResumed, lambda: facade.resume_run(self.settings, self.run_id, detach=True))

    def action_export(self) -> None:
        choices = [("json", "JSON (leaderboard)"), ("csv", "CSV (leaderboard)"), ("md", "Markdown (leaderboard)"),
                   ("svg", "SVG screenshot of this screen")]

        def chosen(fmt: str | None) -> None:
            if fmt == "svg":
                self.save_svg()
            elif fmt:
                self._job(LeaderboardExported, lambda: facade.export_leaderboard(self.rd, fmt))
        self.app.push_screen(ChoiceScreen("Export", choices), chosen)

    def save_svg(self) -> str:
        folder = facade.export_dir(self.rd)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"run-{self.run_id}-{time.strftime('%H%M%S')}.svg"
        path = self.app.save_screenshot(name, str(folder))
        self.notify(f"saved {path}", timeout=6)
        return path

    def action_copy(self) -> None:
        """The leaderboard as Markdown in a viewer: y copies it (OSC 52), s saves it."""
        self._job(LeaderboardCopied, lambda: facade.leaderboard(self.rd).to_markdown())

    def action_handoff(self) -> None:
        self._job(HandoffReady, lambda: facade.handoff(self.settings, self.run_id))

    @work(thread=True, group="run-actions", exit_on_error=False)
    def _job(self, done: Callable[..., JobDone[Any]], work: Callable[[], Any]) -> None:
        bridge.run_job(done, work, self.post_message)

    def on_run_cancelled(self, message: RunCancelled) -> None:
        if not failed(self, message):
            self.notify("cancel sent: the run stops after saving its current state", timeout=6)

    def on_run_resumed(self, message: RunResumed) -> None:
        if not failed(self, message):
            self.notify(f"run {self.run_id} resumed", timeout=4)

    def on_leaderboard_exported(self, message: LeaderboardExported) -> None:
        if not failed(self, message):
            self.notify(f"saved {message.result}", timeout=8)

    def on_handoff_ready(self, message: HandoffReady) -> None:
        if not failed(self, message) and message.result is not None:
            show_handoff(self, self.run_id, message.result, facade.export_dir(self.rd))

    def on_leaderboard_copied(self, message: LeaderboardCopied) -> None:
        if not failed(self, message) and message.result is not None:
            self.app.push_screen(TextScreen(f"Leaderboard of {self.run_id}", message.result,
                                            save_path=facade.export_dir(self.rd) / "leaderboard.md"))


# -- shared with the history screen ---------------------------------------------------------------------------

def show_handoff(screen: Screen[Any], run_id: str, files: dict[str, str], folder: Path) -> None:
    """The hand-off of the winner (the pipeline's file name -> text: LLaMA-Factory YAML, ms-swift command)."""
    text = "\n\n".join(f"# ---- {name}\n{value}" for name, value in files.items())
    screen.app.push_screen(TextScreen(f"Hand-off of the winner of {run_id}", text, save_path=folder / "handoff.txt"))
