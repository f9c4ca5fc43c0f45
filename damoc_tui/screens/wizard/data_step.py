"""Step 2: the dataset, with the library's `data inspect` summary of the training file and its problems."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Static

from damoc import facade
from damoc_tui import bridge
from damoc_tui.messages import DatasetInspected
from damoc_tui.screens.wizard.forms import Form
from damoc_tui.screens.wizard.picker import FilePicker
from damoc_tui.screens.wizard.step import Step

SHOWN_PROBLEMS = 8


class DataStep(Step):
    key, title, first = "data", "Dataset", "#w-train"

    def __init__(self, form: Form, dataset: str) -> None:
        super().__init__(form)
        self.dataset = dataset
        self.report: dict[str, Any] | None = None     # of the file last inspected (`_for`)

    def compose(self) -> ComposeResult:
        f = self.form
        yield Label("Training set (JSONL/JSON/CSV/Parquet or a save_to_disk folder; ctrl+o browses)")
        yield f.input("dataset.train", value=self.dataset, placeholder="path/to/train.jsonl", id="w-train")
        yield Label("Test set (optional: empty = hold out a fraction of the training set)")
        yield f.input("dataset.test", placeholder="path/to/test.jsonl", id="w-test")
        with Horizontal(classes="row"):
            yield Label("held-out fraction ")
            yield f.input("dataset.test_fraction", id="w-test-fraction", classes="short")
            yield Label("  max train ")
            yield f.input("dataset.max_train", placeholder="all", id="w-max-train", classes="short")
            yield Label("  max test ")
            yield f.input("dataset.max_test", placeholder="all", id="w-max-test", classes="short")
        yield Static("enter a path to see its summary", id="w-data-report", classes="note")

    @property
    def samples(self) -> int | None:
        """Records in the training file, once inspected."""
        return self.report.get("samples") if self.report else None

    @on(Input.Changed, "#w-train")
    def _train_changed(self, event: Input.Changed) -> None:
        """Another path: what was said about the old one (its summary, its errors) no longer holds."""
        if self.report is not None and self.report.get("_for") != event.value.strip():
            self.query_one("#w-data-report", Static).update("enter (or tab) reads the new path")
            self._clear_nav_error()

    def _clear_nav_error(self) -> None:
        for err in self.screen.query("#wiz-error"):
            if isinstance(err, Static):
                err.update("")

    @on(Input.Submitted, "#w-train")
    @on(Input.Blurred, "#w-train")
    def _train_entered(self, event: Input.Submitted | Input.Blurred) -> None:
        path = self.query_one("#w-train", Input).value.strip()
        again = isinstance(event, Input.Submitted)       # enter reads the file again (fixed in place)
        if path and (again or self.report is None or self.report.get("_for") != path):
            self.inspect(path)

    def browse(self) -> None:
        current = self.query_one("#w-train", Input).value.strip()
        start = Path(current).expanduser().parent if current else Path.cwd()

        def picked(path: str | None) -> None:
            if path:
                self.query_one("#w-train", Input).value = path
                self.inspect(path)
        self.app.push_screen(FilePicker(start), picked)

    @work(thread=True, group="wizard-inspect", exclusive=True, exit_on_error=False)
    def inspect(self, path: str) -> None:
        self.app.call_from_thread(self.query_one("#w-data-report", Static).update, f"inspecting {escape(path)}…")

        def run() -> dict[str, Any]:
            return {**facade.inspect_dataset(Path(path).expanduser()), "_for": path}
        bridge.run_job(DatasetInspected, run, self.post_message, path=path)

    def on_dataset_inspected(self, message: DatasetInspected) -> None:
        report = self.query_one("#w-data-report", Static)
        if message.error or message.result is None:
            self.report = {"ok": False, "_for": message.path}
            report.update(f"[red]{escape(message.error)}[/]" + (f"\n{escape(message.hint)}" if message.hint else ""))
            return
        self.report = message.result
        report.update("\n".join(facade.dataset_lines(message.result, max_problems=SHOWN_PROBLEMS)))
        if not self.problem():
            self._clear_nav_error()          # the path was fixed: the error said about the old one goes

    def problem(self) -> str:
        train = self.query_one("#w-train", Input).value.strip()
        if not train:
            return "a training set is required"
        if not Path(train).expanduser().exists():
            return f"{train}: no such file or folder"
        if self.report is not None and self.report.get("_for") == train and not self.report.get("ok", True):
            return "the dataset has errors (see above): fix them or pick another file"
        return ""
