"""Step 5: layer pruning and sparse merging, with what the planner will decide for each ticked candidate (pruned
and merged, layers dropped only, or skipped and why)."""
from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Static

from damoc import facade
from damoc.facade import Candidate, RunConfig
from damoc_tui.screens.wizard.forms import Form
from damoc_tui.screens.wizard.step import Step


class PruneStep(Step):
    key, title, first = "prune", "Prune", "#w-prune-threshold"

    def compose(self) -> ComposeResult:
        f = self.form
        default_rule = facade.default_merge_rule()
        rules = [(f"default ({default_rule})", "")] + [(f"{name}: {about}"[:70], name)
                                                        for name, about in facade.merge_rules()]
        yield f.tick("prune.enabled", "prune layers and sparse-merge the task vector (Chat candidates with a Base)",
                     id="w-prune-on")
        with Horizontal(classes="row"):
            yield Label("similarity threshold ")
            yield f.input("prune.threshold", id="w-prune-threshold", classes="short")
            yield Label("  merge sparsity ")
            yield f.input("prune.sparsity", id="w-prune-sparsity", classes="short")
        with Horizontal(classes="row"):
            yield Label("merge rule ")
            yield f.select("prune.rule", rules, id="w-prune-rule")
        yield f.tick("prune.allow_no_base", "prune Chat candidates without a Base by plain dropping",
                     id="w-prune-nobase")
        yield Static("", id="w-prune-skips", classes="note")

    def show_outlook(self, config: RunConfig, candidates: list[Candidate]) -> None:
        """The planner's pruning decision for each candidate."""
        lines = []
        for name, d in facade.prune_preview(config, candidates):
            if d.enabled and not d.reason:
                lines.append(f"[green]{escape(name)}: pruned + sparse merge[/]")
            elif d.enabled:
                lines.append(f"[yellow]{escape(name)}: {escape(d.reason)}[/]")
            else:
                lines.append(f"[red]{escape(name)}: pruning skipped: {escape(d.reason)}[/]")
        self.show("\n".join(lines) or "no candidate selected")

    def show(self, text: str) -> None:
        self.query_one("#w-prune-skips", Static).update(text)
