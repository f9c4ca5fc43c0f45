"""Step 7: the pre-flight sheet (the library's description of the plan: cells, skipped stages and why, training
work, disk and memory), then launch or save the config."""
from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Static

from damoc import facade
from damoc.facade import Plan, RunConfig
from damoc_tui.screens.wizard.step import Step

HEADLESS = "[dim]headless: ctrl+s saves this config, then damoc run --config FILE[/]"


class CheckStep(Step):
    key, title, first = "check", "Pre-flight", "#w-launch"

    def compose(self) -> ComposeResult:
        yield Static("checking…", id="w-preflight")
        with Horizontal(classes="row buttons"):
            yield Button("Launch (F5)", id="w-launch", variant="success", compact=True)
            yield Button("Save config (ctrl+s)", id="w-save", compact=True)

    def show_plan(self, config: RunConfig, plan: Plan, samples: int | None) -> None:
        lines = facade.plan_lines(plan, config, samples, settings=self.app.settings)  # type: ignore[attr-defined]
        self.query_one("#w-preflight", Static).update("\n".join([*lines, HEADLESS]))

    def show_error(self, error: str, hint: str) -> None:
        self.query_one("#w-preflight", Static).update(
            f"[red]{escape(error)}[/]" + (f"\n[dim]{escape(hint)}[/]" if hint else ""))
