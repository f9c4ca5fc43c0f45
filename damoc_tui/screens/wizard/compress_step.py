"""Step 4: token compression of each sample: the compressor (from its registry), the rate, the BERTScore gate and
the LMs that compress and rewrite."""
from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, Select, Static

from damoc import facade
from damoc_tui.screens.wizard.forms import Form
from damoc_tui.screens.wizard.step import Step


class CompressStep(Step):
    key, title, first = "compress", "Compress", "#w-comp-rate"

    def __init__(self, form: Form) -> None:
        super().__init__(form)
        self.about = dict(facade.compressors())

    def compose(self) -> ComposeResult:
        f = self.form
        yield f.tick("compress.enabled", "compress the tokens of each sample (question-conditioned perplexity)",
                     id="w-comp-on")
        with Horizontal(classes="row"):
            yield Label("method ")
            yield f.select("compress.method", [(name, name) for name in self.about], id="w-comp-method")
        yield Static("", id="w-comp-about", classes="note")
        with Horizontal(classes="row"):
            yield Label("rate (fraction of tokens kept) ")
            yield f.input("compress.rate", id="w-comp-rate", classes="short")
            yield Label("  BERTScore gate ")
            yield f.input("compress.threshold", placeholder="auto", id="w-comp-gate", classes="short")
        yield Label("compressor LM (registry name or folder; empty = the smallest candidate)")
        yield f.input("compress.model", placeholder="smallest candidate", id="w-comp-model")
        yield Label("rewriter LM for samples that fail the gate (empty = no rewriting)")
        yield f.input("compress.rewriter", placeholder="no rewriting", id="w-comp-rewriter")
        yield Static("The gate keeps a compressed sample only when its BERTScore against the original is above the "
                     "threshold (auto = the encoder's equivalent of the paper's 0.9); the others are rewritten by "
                     "the rewriter, or kept as they were.", classes="note")

    @on(Select.Changed, "#w-comp-method")
    def _compressor(self, event: Select.Changed) -> None:
        self.query_one("#w-comp-about", Static).update(escape(self.about.get(str(event.value), "")))
