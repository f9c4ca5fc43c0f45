"""Step 1: the candidates to compare, ticked in a table of the registry's local candidates."""
from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from damoc.facade import Candidate
from damoc_tui.screens.candidate_view import FIRST_STEP
from damoc_tui.screens.wizard.forms import Form
from damoc_tui.screens.wizard.step import Step
from damoc_tui.widgets.synced_table import SyncedTable

COLUMNS = [("sel", "", 1), ("name", "candidate", 24), ("arch", "architecture", 12), ("layers", "layers", 6),
           ("merge", "merge", 8)]


class CandidatesStep(Step):
    key, title, first = "cands", "Candidates", "#w-cands"

    def __init__(self, form: Form, preselected: list[str]) -> None:
        super().__init__(form)
        self.preselected = preselected
        self.registry: list[Candidate] = []
        self.chosen: list[str] = list(preselected)

    def compose(self) -> ComposeResult:
        yield Static("Candidates to compare: [b]space[/b] or enter toggles ●; merge = pruning with sparse "
                     "merging possible", classes="help-line")
        yield SyncedTable(COLUMNS, row_key="key", id="w-cands")
        yield Static("", id="w-cands-note", classes="note")

    def fill(self, cands: list[Candidate]) -> None:
        self.registry = cands
        names = {c.name for c in cands}
        self.chosen = [n for n in self.chosen if n in names]       # keep the ticks made meanwhile
        self._render_rows()
        local = {c.name for c in self.local()}
        missing = [n for n in self.preselected if n not in local]
        note = f"{len(local)} candidates on this machine"
        if not local:                      # the first step, as the registry screen says it
            self.query_one("#w-cands-note", Static).update(
                FIRST_STEP.replace("no candidate on this machine yet: ", "no candidate on this machine yet: esc, then on "
                                   "the registry screen (1): ", 1))
            return
        if missing:
            note += f"; not local (pull them on the registry screen first): {', '.join(missing)}"
        self.query_one("#w-cands-note", Static).update(escape(note))

    def local(self) -> list[Candidate]:
        return sorted((c for c in self.registry if c.summary().get("local")), key=lambda c: (c.source != "zoo", c.name))

    def selected(self) -> list[Candidate]:
        """The ticked candidates, in the table's order."""
        return [c for c in self.local() if c.name in self.chosen]

    def toggle(self) -> None:
        key = self.query_one("#w-cands", SyncedTable).highlighted_key
        if key is None:
            return
        if key in self.chosen:
            self.chosen.remove(key)
        else:
            self.chosen.append(key)
        self._render_rows()

    @on(DataTable.RowSelected, "#w-cands")
    def _enter(self, event: DataTable.RowSelected) -> None:
        self.toggle()

    def _render_rows(self) -> None:
        rows = []
        for c in self.local():
            s = c.summary()
            merge = Text("yes", style="green") if c.merge_supported else \
                Text("no Base" if c.base is None else "no", style="red")
            rows.append({"key": c.name, "sel": Text("●", style="bold") if c.name in self.chosen else "",
                         "name": c.name, "arch": s.get("architecture") or "?", "layers": str(s.get("layers") or "?"),
                         "merge": merge})
        self.query_one("#w-cands", SyncedTable).sync(rows)

    def problem(self) -> str:
        return "" if self.selected() else "pick at least one candidate (space)"
