"""Step 3: the data filter (the registry's methods grouped by family), its budget and the LM-based methods' scorer,
with the paper's warning on small ratios."""
from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from damoc import facade
from damoc_tui.screens.wizard.forms import Form, number
from damoc_tui.screens.wizard.step import Step
from damoc_tui.widgets.keylist import KeyList

RATIO_WARNING = "the paper found that 5% breaks the ranking; 10% (the default) is safe"
SAFE_RATIO = 0.1


class FilterStep(Step):
    key, title, first = "filter", "Filter", "#w-filter-method"

    def __init__(self, form: Form) -> None:
        super().__init__(form)
        self.default_method: str = facade.setting("filter.method").default

    def compose(self) -> ComposeResult:
        f = self.form
        yield f.tick("filter.enabled", "filter the training set (shared by every candidate)", id="w-filter-on")
        yield KeyList(*self._options(), id="w-filter-method", compact=True)
        yield Static("", id="w-filter-chosen", classes="help-line")     # the choice in words, not by colour only
        with Horizontal(classes="row"):
            yield Label("ratio kept ")
            yield f.input("filter.ratio", id="w-filter-ratio", classes="short")
            yield Label("  or count ")
            yield f.input("filter.count", placeholder="-", id="w-filter-count", classes="short")
        yield Static(RATIO_WARNING, id="w-ratio-note", classes="note")
        yield Label("scoring LM of the LM-based methods (registry name or folder; empty = the smallest candidate)")
        yield f.input("filter.scorer", placeholder="smallest candidate", id="w-filter-scorer")

    @staticmethod
    def _options() -> list[Option]:
        methods = facade.filters()
        opts = []
        for family in dict.fromkeys(e.family for e in methods):
            opts.append(Option(f"── {escape(family or 'other')} ──", disabled=True))
            opts += [Option(f"{escape(e.name)}  [dim]{escape(e.description)}[/]", id=e.name)
                     for e in methods if e.family == family]
        return opts

    def on_mount(self) -> None:
        ol = self.query_one("#w-filter-method", OptionList)
        ol.highlighted = ol.get_option_index(self.default_method)
        self._show_choice()

    @on(OptionList.OptionHighlighted, "#w-filter-method")
    def _show_choice(self) -> None:
        self.query_one("#w-filter-chosen", Static).update(f"method: [b]{escape(self.method())}[/b]")

    def choose(self, method: str) -> None:
        ol = self.query_one("#w-filter-method", OptionList)
        try:
            ol.highlighted = ol.get_option_index(method)
        except Exception:          # a method this version does not have: keep the current one
            return
        self._show_choice()

    def method(self) -> str:
        ol = self.query_one("#w-filter-method", OptionList)
        if ol.highlighted is None:
            return self.default_method
        return str(ol.get_option_at_index(ol.highlighted).id)

    @on(Input.Changed, "#w-filter-ratio")
    def _ratio(self, event: Input.Changed) -> None:
        value = number(event.value, float)
        small = isinstance(value, float) and value < SAFE_RATIO
        self.query_one("#w-ratio-note", Static).update(f"[b red]warning: {RATIO_WARNING}[/]" if small
                                                       else RATIO_WARNING)
