"""Runs: every run directory (running and finished), its leaderboard, the comparison with a ground-truth run over the
same candidates, exports, the hand-off config of the winner, copy over SSH (OSC 52)."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, ClassVar

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from damoc import facade
from damoc.errors import DamocError
from damoc_tui import bridge
from damoc_tui.followers import Loop
from damoc_tui.messages import (HandoffReady, JobDone, LeaderboardCopied, LeaderboardExported, RunCancelled,
                                RunResumed, RunsCompared, RunsListed)
from damoc_tui.screens.modals import ChoiceScreen, ConfirmScreen, TextScreen, failed
from damoc_tui.screens.run import fmt_score, fmt_seconds, show_handoff, status_text
from damoc_tui.widgets.synced_table import SyncedTable
from damoc_tui.widgets.topbar import TopBar

# (key, label, minimum width): the run id and the numbers are never cut; the winner takes the rest (abbreviated,
# in full in the preview); `label` then `cands` are dropped when the width is short
RUN_COLUMNS = [("run_id", "run", 20), ("mode", "mode", 6), ("status", "status", 8), ("n", "cands", 5),
               ("winner", "winner", 10), ("score", "score", 6), ("took", "took", 6), ("label", "label", 8)]
RUN_OPTIONAL = ("label", "n")


class HistoryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open", id="runs.open"),
        Binding("e", "export", "Export", id="runs.export"),
        Binding("c", "compare", "Compare", id="runs.compare"),
        Binding("h", "handoff", "Hand-off", id="runs.handoff"),
        Binding("y", "copy", "Copy", id="runs.copy"),
        Binding("x", "cancel_run", "Cancel", id="runs.cancel", show=False),
        Binding("r", "resume_run", "Resume", id="runs.resume", show=False),
        Binding("f", "refresh", "Refresh", id="runs.refresh", show=False),
        Binding("j", "cursor_down", "Down", id="runs.down", show=False),
        Binding("k", "cursor_up", "Up", id="runs.up", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.summaries: dict[str, dict[str, Any]] = {}
        self._poke = threading.Event()
        self._poll: Loop | None = None
        self._cache: dict[str, tuple[tuple[int, int, bool], bridge.Summary]] = {}

    def compose(self) -> ComposeResult:
        yield TopBar("runs")
        with Horizontal(id="runs-body"):
            yield SyncedTable(RUN_COLUMNS, row_key="run_id", id="runs", flex="winner", flex_min=10,
                              optional=RUN_OPTIONAL)
            with VerticalScroll(id="run-preview"):
                yield Static("no run selected", id="preview")
        yield Footer(compact=True, show_command_palette=False)   # ctrl+p is in the help; 80 columns hold every key

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        self.query_one("#runs", SyncedTable).focus()
        self._start_poll()

    # -- the poller: its own thread, only while this screen is on screen ------------------------------------------
    def _start_poll(self) -> None:
        if self._poll is None or not self._poll.alive:
            self._poll = Loop("list runs", self._poll_runs)

    def _stop_poll(self) -> None:
        if self._poll is not None:
            self._poll.stop()
            self._poll = None

    def on_screen_resume(self) -> None:
        self._start_poll()
        self.action_refresh()

    def on_screen_suspend(self) -> None:
        self._stop_poll()

    def on_unmount(self) -> None:
        self._stop_poll()

    def _poll_runs(self, stop: threading.Event) -> None:
        """Re-read the run directories every 2 s (cheap: unchanged runs are served from a cache)."""
        while not stop.is_set():
            try:
                self.post_message(RunsListed(bridge.run_summaries(self.settings, self._cache)))
            except (DamocError, OSError) as e:      # a runs folder gone or unreadable: say it, keep polling
                self.post_message(RunsListed([{"error": str(e)}]))
            for _ in range(8):                           # 2 s, woken early by `f` (refresh)
                if stop.wait(0.25) or self._poke.is_set():
                    break
            self._poke.clear()

    def on_runs_listed(self, message: RunsListed) -> None:
        if message.rows and "error" in message.rows[0]:
            self.query_one("#preview", Static).update(escape(message.rows[0]["error"]))
            return
        self._show_runs(message.rows)

    def _show_runs(self, rows: list[dict[str, Any]]) -> None:
        self.summaries = {r["run_id"]: r for r in rows}
        table = self.query_one("#runs", SyncedTable)
        table.sync([{**r, "status": status_text(r["status"]), "n": str(r["n"]),
                     "score": fmt_score(r.get("score")),
                     "took": fmt_seconds(r.get("seconds")) if r.get("seconds") is not None else "",
                     "label": r.get("label") or ""}
                    for r in reversed(rows)])
        self._preview()

    def _selected(self) -> dict[str, Any] | None:
        key = self.query_one("#runs", SyncedTable).highlighted_key
        return self.summaries.get(key) if key else None

    @on(DataTable.RowHighlighted, "#runs")
    def _highlight(self, event: DataTable.RowHighlighted) -> None:
        self._preview()

    @on(DataTable.RowSelected, "#runs")
    def _selected_row(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def _preview(self) -> None:
        s = self._selected()
        target = self.query_one("#preview", Static)
        if s is None:
            target.update("no runs yet: press n to start one (or run `damoc demo` in a shell)")
            return
        t = Table(box=None, padding=(0, 1), header_style="bold", expand=False)
        ranking = s.get("ranking", [])
        win = any(r.get("p_best") is not None for r in ranking)
        stopped = any(r.get("status") == "stopped" for r in ranking)
        for col in ("#", "candidate", "score", "gap") + (("win%",) if win else ()) + (("",) if stopped else ()):
            t.add_column(col, justify="right" if col not in ("candidate", "") else "left")
        for r in ranking[:12]:
            gap = r.get("gap")
            t.add_row(str(r.get("rank", "")), escape(str(r.get("name", ""))),
                      fmt_score(r.get("score")),
                      f"-{gap:.3f}" if isinstance(gap, (int, float)) and gap else "",
                      *((facade.fmt_percent(r.get("p_best")),) if win else ()),
                      *(("stopped" if r.get("status") == "stopped" else "",) if stopped else ()))
        label = f"  [i]{escape(str(s['label']))}[/i]" if s.get("label") else ""   # the label column goes at 80
        head = Text.from_markup(
            f"[b]{escape(s['run_id'])}[/b]  {escape(s['mode'])}  {escape(s['status'])}{label}\n"
            f"dataset {escape(str(s.get('dataset') or '?'))}\n")
        from rich.console import Group

        parts: list[Any] = [head]
        if s.get("compare"):          # first: the answer to "did the cheap run pick the real winner?"
            c = s["compare"]
            tau = c.get("kendall_tau")
            parts.append(Text.from_markup(
                f"vs ground truth {escape(c['against'])}: top-1 "
                f"{'[green]agrees[/]' if c.get('top1_agree') else '[red]differs[/]'}"
                + (f", Kendall tau {tau:.2f}" if isinstance(tau, (int, float)) else "")
                + (f", {c['time_ratio']:.1f}x less time" if isinstance(c.get("time_ratio"), (int, float)) else "")
                + "\n"))
        parts.append(t)
        if s.get("reason"):
            parts.append(Text(f"\n{s['reason']}", style="dim"))
        target.update(Group(*parts))

    # -- actions ------------------------------------------------------------------------------------------------
    def action_refresh(self) -> None:
        self._poke.set()

    def action_cursor_down(self) -> None:
        self.query_one("#runs", SyncedTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#runs", SyncedTable).action_cursor_up()

    def _need(self) -> dict[str, Any] | None:
        s = self._selected()
        if s is None:
            self.notify("no run selected", severity="warning")
        return s

    def action_open(self) -> None:
        if (s := self._need()) is not None:
            self.app.open_run(s["run_id"])  # type: ignore[attr-defined]

    def action_export(self) -> None:
        s = self._need()
        if s is None:
            return
        choices = [("json", "JSON"), ("csv", "CSV"), ("md", "Markdown"), ("svg", "SVG screenshot of this screen")]

        def chosen(fmt: str | None) -> None:
            if fmt == "svg":
                folder = facade.export_dir(facade.open_run(self.settings, s["run_id"]))
                folder.mkdir(parents=True, exist_ok=True)
                path = self.app.save_screenshot(f"runs-{s['run_id']}.svg", str(folder))
                self.notify(f"saved {path}", timeout=6)
            elif fmt:
                self._job(LeaderboardExported,
                          lambda: facade.export_leaderboard(facade.open_run(self.settings, s["run_id"]), fmt))
        self.app.push_screen(ChoiceScreen(f"Export {s['run_id']}", choices), chosen)

    def action_copy(self) -> None:
        """The leaderboard as Markdown in a viewer: y copies it (OSC 52), s saves it."""
        if (s := self._need()) is not None:
            self._job(LeaderboardCopied,
                      lambda: facade.leaderboard(facade.open_run(self.settings, s["run_id"])).to_markdown(),
                      run_id=s["run_id"])

    def action_handoff(self) -> None:
        if (s := self._need()) is not None:
            self._job(HandoffReady, lambda: facade.handoff(self.settings, s["run_id"]), run_id=s["run_id"])

    def action_compare(self) -> None:
        s = self._need()
        if s is None:
            return
        others = [(rid, f"{rid}  {o['mode']}  {o['status']}") for rid, o in reversed(self.summaries.items())
                  if rid != s["run_id"]]
        if not others:
            self.notify("no other run to compare with", severity="warning")
            return

        def chosen(other: str | None) -> None:
            if other:
                self._job(RunsCompared, lambda: facade.compare_runs(self.settings, s["run_id"], other),
                          a=s["run_id"], b=other)
        self.app.push_screen(ChoiceScreen(f"Compare {s['run_id']} with", others), chosen)

    def action_cancel_run(self) -> None:
        s = self._need()
        if s is None or s["status"] != "running":
            if s is not None:
                self.notify("this run is not running", severity="warning")
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._job(RunCancelled, lambda: facade.cancel_run(self.settings, s["run_id"]))
        self.app.push_screen(ConfirmScreen(f"Cancel run {s['run_id']}?", "Finished cells are kept; r resumes.",
                                           yes="Cancel run", no="Keep running"), answer)

    def action_resume_run(self) -> None:
        s = self._need()
        if s is None:
            return
        if s["status"] == "running":
            self.notify("already running", severity="warning")
            return
        self._job(RunResumed, lambda: facade.resume_run(self.settings, s["run_id"], detach=True), run_id=s["run_id"])

    @work(thread=True, group="runs-actions", exit_on_error=False)
    def _job(self, done: Callable[..., JobDone[Any]], work: Callable[[], Any], **context: Any) -> None:
        bridge.run_job(done, work, self.post_message, **context)

    def on_leaderboard_exported(self, message: LeaderboardExported) -> None:
        if not failed(self, message):
            self.notify(f"saved {message.result}", timeout=8)

    def on_handoff_ready(self, message: HandoffReady) -> None:
        if not failed(self, message) and message.result is not None:
            rd = facade.open_run(self.settings, message.run_id)
            show_handoff(self, message.run_id, message.result, facade.export_dir(rd))

    def on_leaderboard_copied(self, message: LeaderboardCopied) -> None:
        if not failed(self, message) and message.result is not None:
            rd = facade.open_run(self.settings, message.run_id)
            self.app.push_screen(TextScreen(f"Leaderboard of {rd.run_id}", message.result,
                                            save_path=facade.export_dir(rd) / "leaderboard.md"))

    def on_runs_compared(self, message: RunsCompared) -> None:
        if not failed(self, message) and message.result is not None:
            rd = facade.open_run(self.settings, message.a)
            self.app.push_screen(TextScreen(f"{message.a} vs {message.b}", compare_text(message.result),
                                            save_path=facade.export_dir(rd) / f"compare-{message.b}.txt"))

    def on_run_resumed(self, message: RunResumed) -> None:
        if not failed(self, message):
            self.notify(f"run {message.run_id} resumed: enter to watch it", timeout=6)
            self.action_refresh()

    def on_run_cancelled(self, message: RunCancelled) -> None:
        if not failed(self, message):
            self.notify("cancel sent", timeout=4)


def compare_text(c: facade.Comparison) -> str:
    """Two runs compared, as the viewer shows and saves it: the rankings side by side, then top-1, Kendall tau,
    Spearman rho and the time ratios, formatted."""
    from rich.console import Console

    def f(v: float | None, spec: str = ".3f") -> str:
        return "n/a" if v is None else format(v, spec)

    t = Table(box=None, padding=(0, 2), header_style="bold")
    t.add_column("#", justify="right")
    t.add_column(f"A {c.run_a}")
    t.add_column(f"B {c.run_b}")
    for i in range(max(len(c.ranking_a), len(c.ranking_b))):
        a = c.ranking_a[i] if i < len(c.ranking_a) else ""
        b = c.ranking_b[i] if i < len(c.ranking_b) else ""
        t.add_row(str(i + 1), a, b + ("  (same)" if a and a == b else ""))
    con = Console(width=200, record=True, file=open(os.devnull, "w"), color_system=None)
    con.print(t)
    lines = [con.export_text().rstrip(), "",
             f"top-1           {'agrees' if c.top1_agree else 'differs'} ({c.top1_a or '-'} vs {c.top1_b or '-'})",
             f"Kendall tau     {f(c.kendall_tau)}  over {len(c.common)} candidates in both",
             f"Spearman rho    {f(c.spearman_rho)}",
             f"wall time       A {fmt_seconds(c.seconds_a)}, B {fmt_seconds(c.seconds_b)}: B/A = "
             f"{f(c.time_ratio, '.1f')}x",
             f"training time   A {fmt_seconds(c.train_seconds_a)}, B {fmt_seconds(c.train_seconds_b)}: B/A = "
             f"{f(c.train_time_ratio, '.1f')}x"]
    if c.only_a or c.only_b:
        lines.append(f"not scored in both: {', '.join(c.only_a + c.only_b)}")
    return "\n".join(lines) + "\n"
