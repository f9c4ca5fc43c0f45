"""Step 6: the mode, the fine-tuning method(s), seeds, the checkpoint variant and the metric (each list from the
run config's schema), a label, and any further setting in `--set` form."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select, Static

from damoc import facade
from damoc_tui.screens.wizard.forms import DEFAULT
from damoc_tui.screens.wizard.step import Step

# How the app names each value; a value without a name here is shown as it is.
MODE_LABELS = {"damoc": "DaMoC (proxies)", "ground-truth": "ground truth (full fine-tunes)",
               "zero-shot": "zero-shot baseline", "few-shot": "few-shot baseline"}
FT_LABELS = {"full": "full", "lora": "LoRA", "both": "both (which wins for which model)"}
VARIANT_LABELS = {"chat": "Chat checkpoints", "base": "Base checkpoints"}
EXECUTOR_LABELS = {"local": "this machine", "ray": "a Ray cluster"}
METRIC_LABELS = {"auto": "auto (from the data)", "bertscore_rouge": "(BERTScore + ROUGE-L)/2",
                 "squad_f1": "SQuAD F1", "mc_accuracy": "multiple-choice accuracy"}


def _options(values: tuple[str, ...], labels: dict[str, str]) -> list[tuple[str, str]]:
    return [(labels.get(v, v), v) for v in values]


class TrainStep(Step):
    key, title, first = "train", "Fine-tune", "#w-mode"

    def compose(self) -> ComposeResult:
        f = self.form
        with Horizontal(classes="row"):
            yield Label("mode ")
            yield f.select("mode", _options(facade.modes(), MODE_LABELS), id="w-mode")
        with Horizontal(classes="row"):
            yield Label("fine-tuning ")
            yield f.select("ft", _options(facade.finetune_methods(), FT_LABELS), id="w-ft")
        with Horizontal(classes="row"):
            yield Label("seeds ")
            yield f.input("seeds", id="w-seeds", classes="short")
            yield Label("  fine-tune ")
            yield f.select("variant", _options(facade.setting("variant").choices, VARIANT_LABELS), id="w-variant")
        with Horizontal(classes="row"):
            yield Label("metric ")
            yield f.select("evaluate.metric", _options(facade.metrics(), METRIC_LABELS), id="w-metric")
        with Horizontal(classes="row"):
            yield Label("label ")
            yield f.input("label", placeholder="optional name of this run", id="w-label")
        with Horizontal(classes="row"):
            yield Label("runs on ")
            yield f.select("executor.kind", [(EXECUTOR_LABELS.get(n, n), n) for n, _ in facade.executors()],
                           id="w-executor")
            yield Label("  Ray address ")
            yield f.input("executor.address", placeholder="empty: a local Ray; auto; ray://host:10001",
                          id="w-ray-address")
        yield Static("", id="w-executor-note", classes="help-line")
        yield Label("more settings, as `damoc run --set` takes them (space-separated key=value)")
        yield Input(placeholder="e.g. finetune.proxy_min_steps=50 dataset.max_train=2000", id="w-extra",
                    compact=True)
        yield Static("Two seeds let the leaderboard tell a real gap from seed noise; with one, "
                     "leaderboard.tolerance is used.", classes="note")

    def on_mount(self) -> None:
        self._executor_note()

    @on(Select.Changed, "#w-executor")
    def _executor_note(self) -> None:
        """Ray: where it connects, or what to install first; local: the address does not apply."""
        kind = self.query_one("#w-executor", Select).value
        kind = kind if isinstance(kind, str) and kind != DEFAULT else "local"
        self.query_one("#w-ray-address", Input).disabled = kind != "ray"
        missing = facade.executor_unavailable(kind)
        note = f"[b red]{escape(missing)}[/]" if missing else escape(dict(facade.executors()).get(kind, ""))
        self.query_one("#w-executor-note", Static).update(note)

    def set_extra(self, items: list[str]) -> None:
        self.query_one("#w-extra", Input).value = " ".join(items)

    def apply_extra(self, data: dict[str, Any]) -> None:
        """The `--set` style extras over the form's values (checked against the schema, did-you-mean)."""
        for item in self.query_one("#w-extra", Input).value.split():
            facade.apply_override(data, item)

