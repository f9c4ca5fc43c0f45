"""The live view of one run: per-candidate stage progress, the leaderboard (updated cell by cell), loss sparklines,
the logs of the selected candidate, cancel and resume.

The run is a separate process; this screen only tails its events.jsonl (bridge.follow_run) and asks the library to
cancel or resume it. Leaving the screen, quitting the app or losing SSH leaves the run going.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, RichLog, Sparkline, Static

from damoc import facade
from damoc.errors import DamocError
from damoc.facade import DATA_CANDIDATE
from damoc_tui import bridge
from damoc_tui.messages import (HandoffReady, JobDone, LeaderboardCopied, LeaderboardExported, LeaderboardRows,
                                RunCancelled, RunEvents, RunLiveness, RunProgress, RunResumed, RunSnapshot)
from damoc_tui.runstate import CandidateState, RunState, sparkline
from damoc_tui.screens.modals import ChoiceScreen, ConfirmScreen, TextScreen, failed, notify_error
from damoc_tui.screens.run_cells import (_eta_cell, _prune_cell, _short_prune, fmt_gap, fmt_score, fmt_seconds,
                                        row_name, show_handoff, stage_cell, status_text)
from damoc_tui.widgets.synced_table import SyncedTable

__all__ = ["RunScreen", "fmt_gap", "fmt_score", "fmt_seconds", "show_handoff", "status_text"]

# (key, label, minimum width): each column widens to its widest value; the candidate name takes the rest and is
# abbreviated (full name in the detail pane); `loss` then `left` are dropped when 80 columns cannot hold them
BOARD_COLUMNS = [("rank", "#", 2), ("name", "candidate", 12), ("score", "score", 6), ("gap", "gap", 7),
                 ("win", "win%", 4), ("stage", "stage", 8), ("eta", "left", 5), ("loss", "loss", 10), ("prune", "pruned", 10),
                 ("status", "status", 9)]
BOARD_OPTIONAL = ("loss", "eta")
LOSS_WIDTH = 10
LOG_SHOWN = 60             # log lines written when the selection changes (older ones: the run's events.jsonl)


class RunScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "back", "Back", id="run.back"),
        Binding("x", "cancel_run", "Cancel", id="run.cancel"),
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
        self.requested_id = run_id                 # as asked (a prefix, `latest`); `run_id` becomes the full id
        self._tail: Any = None                     # this view's read position in events.jsonl (kept while hidden)
        self._following = False
        self._clock: tuple[float | None, float] = (None, 0.0)   # RunDir.seconds() and when it was read
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
        yield SyncedTable(BOARD_COLUMNS, row_key="name", id="board", flex="name", flex_min=10,
                          optional=BOARD_OPTIONAL)
        with Horizontal(id="run-detail"):
            with Vertical(id="cand-pane"):
                yield Static(id="cand-summary")
                yield Sparkline([], id="cand-loss")
            yield RichLog(id="cand-log", max_lines=400, wrap=True, markup=False, highlight=False)
        yield Footer(compact=True, show_command_palette=False)   # ctrl+p is in the help; 80 columns hold every key

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
        self.query_one("#board", SyncedTable).hide({"win"})     # until a leaderboard row carries P(best)
        self._tail = self.rd.tail()
        self._render_header()
        self.set_interval(1.0, self._tick)        # elapsed time and ETAs count on between events
        self._follow()

    # -- one follower per run, only while this view is on screen ------------------------------------------------
    def _follow(self) -> None:
        if not self._following and self._tail is not None:
            self.app.followers.subscribe(self.rd, self, self._tail)  # type: ignore[attr-defined]
            self._following = True

    def _unfollow(self) -> None:
        if self._following:
            self.app.followers.unsubscribe(self.run_id, self)  # type: ignore[attr-defined]
            self._following = False

    def on_screen_resume(self) -> None:
        self._follow()

    def on_screen_suspend(self) -> None:
        self._unfollow()

    def on_unmount(self) -> None:
        self._unfollow()

    def _tick(self) -> None:
        if self.alive and self.is_current:
            self._mark({self._highlighted()})         # header clock, the `left` column, the detail pane's ETAs

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
        if message.seconds is not None:
            self._clock = (message.seconds, message.at)
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
        board = self.query_one("#board", SyncedTable)
        rows = self.board_rows()
        # columns with nothing to say leave their width to the names: win% before P(best), `left` with no ETA
        board.hide(({"win"} if not any(r.get("p_best") is not None for r in self.rows) else set())
                   | ({"eta"} if not any(r["eta"] for r in rows) else set()))
        board.sync(rows)
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
        now = time.time()
        out = []
        for name in order:
            cand = self.state.candidate(name)
            r = by_name.get(name)
            win = ""
            if r is not None:
                score, rank, gap, close = r.get("score"), r.get("rank"), r.get("gap"), bool(r.get("too_close"))
                win = facade.fmt_percent(r.get("p_best"))        # P(best), as the CLI's win% column
                status = cand.status if cand.status in ("running", "queued") and self.alive else str(r.get("status"))
                prune = _prune_cell(r) or _short_prune(cand.pruning())
            else:                 # not ranked by the pipeline yet: the live fold
                score = cand.score
                rank = ranked.index(cand) + 1 if cand in ranked else None
                gap = (ranked[0].score - score) if score is not None and ranked else None
                close, status, prune = False, cand.status, _short_prune(cand.pruning())
            out.append({
                "name": name,
                "rank": str(rank) if rank is not None and score is not None else "",
                "score": fmt_score(score),
                "gap": fmt_gap(gap, close, rank),
                "win": win,
                "stage": stage_cell(cand),
                "eta": _eta_cell(cand, now),
                "loss": sparkline(cand.losses, LOSS_WIDTH),
                "prune": prune,
                "status": status_text(status),
            })
        return out

    def elapsed(self, now: float | None = None) -> float | None:
        """The run's wall time by the library's one rule (`RunDir.seconds()`, read by the follower), counted on
        from that reading while the run is alive."""
        seconds, at = self._clock
        if seconds is None:
            return None
        return seconds + (max(0.0, (now or time.time()) - at) if self.alive else 0.0)

    def _render_header(self) -> None:
        st = self.state
        status = "running" if self.alive else (st.status if st.status != "created" else self.rd.status())
        live = "● live" if self.alive else f"[b]{escape(status)}[/b]  ○ not running"
        now = time.time()
        cands = len(st.candidates) or len(self.rd.config.get("candidates", []))
        eta = st.eta(now) if self.alive else None
        left = f" ≈{fmt_seconds(eta)} left" if eta is not None else ""
        label = self.rd.config.get("label") or ""
        txt = (f"[b]run {escape(self.run_id)}[/b]  {escape(st.mode or self.rd.config.get('mode', ''))}  {live}  "
               f"{fmt_seconds(self.elapsed(now))}{left}  {cands} cand."
               + (f"  [dim]{escape(str(label)[:24])}[/]" if label else ""))
        if st.resumes:
            txt += f"  resumed ×{st.resumes}"
        if st.reason:
            txt += f"  [dim]{escape(st.reason[:60])}[/]"
        self.query_one("#run-title", Static).update(txt, layout=False)      # one fixed line: no re-layout

    def _render_data(self) -> None:
        parts = []
        now = time.time()
        for st in self.state.data.stages.values():
            if st.parent and st.short == st.parent.rsplit("/", 1)[-1]:
                continue                      # a module's own tracker inside the cell of the same name
            secs = f" {fmt_seconds(st.seconds)}" if st.status != "running" and st.seconds else ""
            eta = st.eta(now)
            secs += f" ≈{fmt_seconds(eta)} left" if eta is not None else ""
            parts.append(escape(st.label()) + secs)
        parts = list(dict.fromkeys(parts))   # a module's tracker outside its cell reads like the cell: said once
        line = "data: " + (" · ".join(parts) if parts else "waiting")
        if self.state.logs:
            line += f"  [dim]{escape(self.state.logs[-1][:50])}[/]"
        self.query_one("#run-data", Static).update(line, layout=False)

    def _highlighted(self) -> str | None:
        return self.query_one("#board", SyncedTable).highlighted_key

    def _render_candidate(self, name: str, logs: bool = True) -> None:
        cand: CandidateState = self.state.candidate(name)
        now = time.time()
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
            eta = st.eta(now)
            left = f"≈{fmt_seconds(eta)} left" if eta is not None else ""
            lines.append(f"{indent}{escape(label)} {fmt_seconds(st.seconds) if st.seconds else left}{why}")
        row = next((r for r in self.rows if row_name(r) == name), None)
        if row and row.get("p_best") is not None:
            lo, hi, measured = row.get("predicted_low"), row.get("predicted_high"), row.get("measured")
            lines.append(f"P(best) {facade.fmt_percent(row['p_best'])}%"
                         + (f" · measured {fmt_score(measured)}" if isinstance(measured, (int, float)) else "")
                         + (f" · predicted {fmt_score(lo)}–{fmt_score(hi)}" if isinstance(lo, (int, float))
                            and isinstance(hi, (int, float)) else "")
                         + (" · stopped early (adaptive budget)" if row.get("status") == "stopped" else ""))
        if row and row.get("merge"):
            merge = str(row["merge"]).replace("skipped: pruning skipped: ", "skipped: ")   # the reason says it once
            lines.append(f"merge: {escape(merge)}")
        if cand.losses:
            lines.append(f"train loss {cand.losses[0]:.3f} → {cand.losses[-1]:.3f} ({len(cand.losses)} pts)")
        self.query_one("#cand-summary", Static).update("\n".join(lines), layout=False)
        if not logs:
            return
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
