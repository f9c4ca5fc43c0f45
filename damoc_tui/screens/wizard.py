"""The run wizard: candidates, dataset (with the `data inspect` summary and its problems), filter method (grouped by
family, with the paper's warning on small ratios), token compression, pruning (which candidates will be skipped and
why), fine-tuning and metric, then the pre-flight sheet and launch. Every field maps to one key of the run config
(`damoc.pipeline.config.RunConfig`), so the same config can be saved as a file and run headless with
`damoc run --config FILE`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (Button, Checkbox, ContentSwitcher, DataTable, DirectoryTree, Footer, Input, Label,
                             OptionList, Select, Static)
from textual.widgets.option_list import Option

from damoc.errors import DamocError
from damoc_tui import bridge, services
from damoc_tui.messages import JobDone
from damoc_tui.screens.modals import FormScreen, notify_error
from damoc_tui.widgets.synced_table import SyncedTable
from damoc_tui.widgets.tickbox import TickBox

CAND_COLUMNS = [("sel", "", 1), ("name", "candidate", 24), ("arch", "architecture", 12), ("layers", "layers", 6),
                ("merge", "merge", 8)]
STEPS = [("cands", "Candidates"), ("data", "Dataset"), ("filter", "Filter"), ("compress", "Compress"),
         ("prune", "Prune"), ("train", "Fine-tune"), ("check", "Pre-flight")]
FAMILY_TITLES = {"": "other"}
# Shown when the filter registry cannot be read (the paper's three families, appendix C.1)
FALLBACK_FILTERS = [("graphcut", "distribution-aware", "GraphCut submodular coverage (the paper's pick)")]
RATIO_WARNING = "the paper found that 5% breaks the ranking; 10% (the default) is safe"


def filter_methods() -> list[tuple[str, str, str]]:
    """(name, family, description) of every data filter, from the registry (no torch import)."""
    try:
        from damoc.filters import FILTERS
    except ImportError:
        return FALLBACK_FILTERS
    out = [(e.name, e.family, e.description) for e in FILTERS]
    return out or FALLBACK_FILTERS


def merge_rules() -> list[tuple[str, str]]:
    try:
        from damoc.prune.merge import DEFAULT_RULE, MERGE_RULES
    except ImportError:
        return [("", "default")]
    rules = [("", f"default ({DEFAULT_RULE})")]
    return rules + [(e.name, f"{e.name}: {e.description}"[:70]) for e in MERGE_RULES]


def compressors() -> list[tuple[str, str]]:
    try:
        from damoc.compress import COMPRESSORS
    except ImportError:
        return [("damoc", "damoc")]
    out = [(e.name, e.description) for e in COMPRESSORS]
    return out or [("damoc", "damoc")]


# widget id -> (run-config key, kind). Initial values come from RunConfig's defaults; a key this version of the
# config does not have disables its widget instead of sending an unknown setting.
FIELDS: dict[str, tuple[str, str]] = {
    "w-train": ("dataset.train", "str"), "w-test": ("dataset.test", "opt_str"),
    "w-test-fraction": ("dataset.test_fraction", "float"), "w-max-train": ("dataset.max_train", "opt_int"),
    "w-max-test": ("dataset.max_test", "opt_int"),
    "w-filter-on": ("filter.enabled", "bool"), "w-filter-ratio": ("filter.ratio", "float"),
    "w-filter-count": ("filter.count", "opt_int"), "w-filter-scorer": ("filter.scorer", "str"),
    "w-comp-on": ("compress.enabled", "bool"), "w-comp-method": ("compress.method", "select"),
    "w-comp-rate": ("compress.rate", "float"), "w-comp-gate": ("compress.threshold", "opt_float"),
    "w-comp-model": ("compress.model", "str"), "w-comp-rewriter": ("compress.rewriter", "str"),
    "w-prune-on": ("prune.enabled", "bool"), "w-prune-threshold": ("prune.threshold", "float"),
    "w-prune-sparsity": ("prune.sparsity", "float"), "w-prune-rule": ("prune.rule", "select"),
    "w-prune-nobase": ("prune.allow_no_base", "bool"),
    "w-mode": ("mode", "select"), "w-variant": ("variant", "select"), "w-metric": ("evaluate.metric", "select"),
    "w-seeds": ("seeds", "list_int"), "w-label": ("label", "str"), "w-ft": ("ft", "select"),
}
DEFAULT_SENTINEL = "__default__"        # Select value standing for "" (the module's default)
_MISSING = object()


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return _MISSING
        d = d[part]
    return d


def _set(d: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        d = d.setdefault(part, {})
    d[last] = value


def _num(text: str, kind: type = float) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text            # left for the config validation to report with the field's name


class FilePicker(ModalScreen[str | None]):
    """Browse for a dataset file (enter picks, esc cancels)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "cancel", "Cancel", id="picker.cancel"),
                                             Binding("backspace", "up", "Parent folder", id="picker.up")]

    def __init__(self, start: Path) -> None:
        super().__init__(classes="modal")
        self.start = start if start.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static("[b]Pick a dataset file[/b]  [dim]enter: pick · backspace: parent · esc: cancel[/]",
                         classes="dialog-title")
            yield Static(escape(str(self.start)), id="picker-where", classes="dialog-detail")
            yield DirectoryTree(str(self.start), id="picker-tree")

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(str(event.path))

    def action_up(self) -> None:
        tree = self.query_one(DirectoryTree)
        parent = Path(tree.path).resolve().parent
        tree.path = parent
        self.query_one("#picker-where", Static).update(escape(str(parent)))

    def action_cancel(self) -> None:
        self.dismiss(None)


class WizardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+j,pagedown", "next_step", "Next", id="wizard.next", priority=True),
        Binding("pageup", "prev_step", "Back", id="wizard.prev", priority=True),
        Binding("f5,ctrl+r", "launch", "Launch", id="wizard.launch", priority=True),
        Binding("ctrl+s", "save", "Save config", id="wizard.save", priority=True),
        Binding("ctrl+o", "browse", "Browse", id="wizard.browse"),
        Binding("escape", "close", "Close", id="wizard.close"),
        Binding("space", "toggle_candidate", "Tick", id="wizard.tick", show=False),
    ]

    def __init__(self, candidates: list[str] | None = None, dataset: str = "") -> None:
        super().__init__()
        self.preselected = list(candidates or [])
        self.initial_dataset = dataset
        self.step = 0
        self.registry: list[Any] = []
        self.report: dict[str, Any] | None = None
        self.plan: Any = None
        self.config: Any = None
        self.launched: str | None = None
        self._chosen: list[str] = list(self.preselected)

    # -- layout ---------------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="wiz-steps", classes="bar topbar")
        with ContentSwitcher(initial="step-cands", id="wiz-body"):
            with VerticalScroll(id="step-cands", classes="step"):
                yield Static("Candidates to compare: [b]space[/b] or enter toggles ●; merge = pruning with sparse "
                             "merging possible", classes="help-line")
                yield SyncedTable(CAND_COLUMNS, row_key="key", id="w-cands")
                yield Static("", id="w-cands-note", classes="note")
            with VerticalScroll(id="step-data", classes="step"):
                yield Label("Training set (JSONL/JSON/CSV/Parquet or a save_to_disk folder; ctrl+o browses)")
                yield Input(value=self.initial_dataset, placeholder="path/to/train.jsonl", id="w-train", compact=True)
                yield Label("Test set (optional: empty = hold out a fraction of the training set)")
                yield Input(placeholder="path/to/test.jsonl", id="w-test", compact=True)
                with Horizontal(classes="row"):
                    yield Label("held-out fraction ")
                    yield Input(id="w-test-fraction", compact=True, classes="short")
                    yield Label("  max train ")
                    yield Input(placeholder="all", id="w-max-train", compact=True, classes="short")
                    yield Label("  max test ")
                    yield Input(placeholder="all", id="w-max-test", compact=True, classes="short")
                yield Static("enter a path to see its summary", id="w-data-report", classes="note")
            with VerticalScroll(id="step-filter", classes="step"):
                yield TickBox("filter the training set (shared by every candidate)", True, id="w-filter-on",
                               compact=True)
                yield OptionList(id="w-filter-method", compact=True)
                with Horizontal(classes="row"):
                    yield Label("ratio kept ")
                    yield Input(id="w-filter-ratio", compact=True, classes="short")
                    yield Label("  or count ")
                    yield Input(placeholder="-", id="w-filter-count", compact=True, classes="short")
                yield Static(RATIO_WARNING, id="w-ratio-note", classes="note")
                yield Label("scoring LM of the LM-based methods (registry name or folder; empty = the smallest "
                            "candidate)")
                yield Input(placeholder="smallest candidate", id="w-filter-scorer", compact=True)
            with VerticalScroll(id="step-compress", classes="step"):
                yield TickBox("compress the tokens of each sample (question-conditioned perplexity)", True,
                               id="w-comp-on", compact=True)
                with Horizontal(classes="row"):
                    yield Label("method ")
                    yield Select([(name, name) for name, _ in compressors()], value=compressors()[0][0],
                                 id="w-comp-method", compact=True, allow_blank=False)
                yield Static("", id="w-comp-about", classes="note")
                with Horizontal(classes="row"):
                    yield Label("rate (fraction of tokens kept) ")
                    yield Input(id="w-comp-rate", compact=True, classes="short")
                    yield Label("  BERTScore gate ")
                    yield Input(placeholder="auto", id="w-comp-gate", compact=True, classes="short")
                yield Label("compressor LM (registry name or folder; empty = the smallest candidate)")
                yield Input(placeholder="smallest candidate", id="w-comp-model", compact=True)
                yield Label("rewriter LM for samples that fail the gate (empty = no rewriting)")
                yield Input(placeholder="no rewriting", id="w-comp-rewriter", compact=True)
                yield Static("The gate keeps a compressed sample only when its BERTScore against the original is "
                             "above the threshold (auto = the encoder's equivalent of the paper's 0.9); the others "
                             "are rewritten by the rewriter, or kept as they were.", classes="note")
            with VerticalScroll(id="step-prune", classes="step"):
                yield TickBox("prune layers and sparse-merge the task vector (Chat candidates with a Base)", True,
                               id="w-prune-on", compact=True)
                with Horizontal(classes="row"):
                    yield Label("similarity threshold ")
                    yield Input(id="w-prune-threshold", compact=True, classes="short")
                    yield Label("  merge sparsity ")
                    yield Input(id="w-prune-sparsity", compact=True, classes="short")
                with Horizontal(classes="row"):
                    yield Label("merge rule ")
                    yield Select([(label, value or DEFAULT_SENTINEL) for value, label in merge_rules()],
                                 value=DEFAULT_SENTINEL, id="w-prune-rule", compact=True, allow_blank=False)
                yield TickBox("prune Chat candidates without a Base by plain dropping", False, id="w-prune-nobase",
                               compact=True)
                yield Static("", id="w-prune-skips", classes="note")
            with VerticalScroll(id="step-train", classes="step"):
                with Horizontal(classes="row"):
                    yield Label("mode ")
                    yield Select([("DaMoC (proxies)", "damoc"), ("ground truth (full fine-tunes)", "ground-truth"),
                                  ("zero-shot baseline", "zero-shot"), ("few-shot baseline", "few-shot")],
                                 value="damoc", id="w-mode", compact=True, allow_blank=False)
                with Horizontal(classes="row"):
                    yield Label("fine-tuning ")
                    yield Select([("full", "full"), ("LoRA", "lora"), ("both (which wins for which model)", "both")],
                                 value="full", id="w-ft", compact=True, allow_blank=False)
                with Horizontal(classes="row"):
                    yield Label("seeds ")
                    yield Input(id="w-seeds", compact=True, classes="short")
                    yield Label("  fine-tune ")
                    yield Select([("Chat checkpoints", "chat"), ("Base checkpoints", "base")], value="chat",
                                 id="w-variant", compact=True, allow_blank=False)
                with Horizontal(classes="row"):
                    yield Label("metric ")
                    yield Select([("auto (from the data)", "auto"), ("(BERTScore + ROUGE-L)/2", "bertscore_rouge"),
                                  ("SQuAD F1", "squad_f1"), ("multiple-choice accuracy", "mc_accuracy")],
                                 value="auto", id="w-metric", compact=True, allow_blank=False)
                with Horizontal(classes="row"):
                    yield Label("label ")
                    yield Input(placeholder="optional name of this run", id="w-label", compact=True)
                yield Label("more settings, as `damoc run --set` takes them (space-separated key=value)")
                yield Input(placeholder="e.g. finetune.proxy_min_steps=50 dataset.max_train=2000", id="w-extra",
                            compact=True)
                yield Static("Two seeds let the leaderboard tell a real gap from seed noise; with one, "
                             "leaderboard.tolerance is used.", classes="note")
            with VerticalScroll(id="step-check", classes="step"):
                yield Static("checking…", id="w-preflight")
                with Horizontal(classes="row buttons"):
                    yield Button("Launch (F5)", id="w-launch", variant="success", compact=True)
                    yield Button("Save config (ctrl+s)", id="w-save", compact=True)
        with Horizontal(id="wiz-nav"):
            yield Button("◀ Back (pgup)", id="w-prev", compact=True)
            yield Static("", id="wiz-error")
            yield Button("Next (pgdn/ctrl+j) ▶", id="w-next", compact=True, variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        methods = filter_methods()
        opts: list[Option | None] = []
        for fam in dict.fromkeys(f for _, f, _ in methods):
            opts.append(Option(f"── {escape(fam or 'other')} ──", disabled=True))
            for name, f, desc in methods:
                if f == fam:
                    opts.append(Option(f"{escape(name)}  [dim]{escape(desc)}[/]", id=name))
        ol = self.query_one("#w-filter-method", OptionList)
        ol.add_options(opts)
        names = [n for n, _, _ in methods]
        ol.highlighted = [o.id for o in ol.options].index("graphcut" if "graphcut" in names else names[0])
        self._fill_defaults()
        self._show_step()
        snapshot = getattr(self.app, "registry_snapshot", None)
        if snapshot:
            self._fill_candidates(list(snapshot))    # at once; the fresh list replaces it when read
        self.load_registry()
        if self.initial_dataset:
            self.inspect(self.initial_dataset)

    def _fill_defaults(self) -> None:
        """Every field starts at the run config's default (the paper's recipe)."""
        from damoc.pipeline.config import RunConfig

        self.defaults = RunConfig().to_dict()
        for wid, (key, kind) in FIELDS.items():
            widget = self.query_one(f"#{wid}")
            value = _get(self.defaults, key)
            if value is _MISSING:
                widget.disabled = True
                widget.tooltip = f"{key} is not a setting of this version's run config"
                continue
            if kind == "bool":
                widget.value = bool(value)
            elif kind == "select":
                from textual.widgets._select import InvalidSelectValueError

                try:
                    widget.value = DEFAULT_SENTINEL if value in ("", None) else value
                except InvalidSelectValueError:      # a default this form does not offer: keep the form's own
                    pass
            elif kind == "list_int":
                widget.value = ",".join(str(v) for v in value)
            elif wid not in ("w-train",) or not widget.value:
                widget.value = "" if value is None else str(value)
        method = _get(self.defaults, "filter.method")
        ol = self.query_one("#w-filter-method", OptionList)
        ids = [o.id for o in ol.options]
        if method in ids:
            ol.highlighted = ids.index(method)

    # -- steps ------------------------------------------------------------------------------------------------------
    def _show_step(self) -> None:
        key = STEPS[self.step][0]
        self.query_one("#wiz-body", ContentSwitcher).current = f"step-{key}"
        self.refresh_bindings()
        wide = self.app.size.width >= 110
        parts = []
        for i, (_, title) in enumerate(STEPS):
            if i == self.step:
                parts.append(f"[b reverse] {i + 1} {title} [/]")
            else:
                parts.append(f"[dim]{i + 1}{' ' + title if wide else ''}[/]")
        self.query_one("#wiz-steps", Static).update(" New run  " + " ".join(parts))
        self.query_one("#w-next", Button).label = "Launch (F5) ▶" if key == "check" else "Next (pgdn/ctrl+j) ▶"
        self.query_one("#wiz-error", Static).update("")
        if key == "prune":
            self._render_skips()
        if key == "check":
            self.check()
        first = {"cands": "#w-cands", "data": "#w-train", "filter": "#w-filter-method", "compress": "#w-comp-rate",
                 "prune": "#w-prune-threshold", "train": "#w-mode", "check": "#w-launch"}[key]
        self.query_one(first).focus()

    def action_next_step(self) -> None:
        if STEPS[self.step][0] == "check":
            self.action_launch()
            return
        problem = self._step_problem()
        if problem:
            self.query_one("#wiz-error", Static).update(f"[red]{escape(problem)}[/]")
            return
        self.step = min(self.step + 1, len(STEPS) - 1)
        self._show_step()

    def action_prev_step(self) -> None:
        self.step = max(self.step - 1, 0)
        self._show_step()

    def go_to(self, key: str) -> None:
        self.step = [k for k, _ in STEPS].index(key)
        self._show_step()

    def _step_problem(self) -> str:
        key = STEPS[self.step][0]
        if key == "cands" and not self.selected():
            return "pick at least one candidate (space)"
        if key == "data":
            train = self.query_one("#w-train", Input).value.strip()
            if not train:
                return "a training set is required"
            if not Path(train).expanduser().exists():
                return f"{train}: no such file or folder"
            if self.report is not None and not self.report.get("ok", True):
                return "the dataset has errors (see above): fix them or pick another file"
        return ""

    @on(Button.Pressed, "#w-next")
    def _next(self) -> None:
        self.action_next_step()

    @on(Button.Pressed, "#w-prev")
    def _prev(self) -> None:
        self.action_prev_step()

    @on(Button.Pressed, "#w-launch")
    def _launch_button(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#w-save")
    def _save_button(self) -> None:
        self.action_save()

    def action_close(self) -> None:
        self.app.pop_screen()

    # -- candidates -------------------------------------------------------------------------------------------------
    @work(thread=True, group="wizard-io", exit_on_error=False)
    def load_registry(self) -> None:
        bridge.run_job("registry", lambda: services.registry_list(self.settings), self.post_message)

    def _fill_candidates(self, cands: list[Any]) -> None:
        self.registry = cands
        names = {c.name for c in cands}
        self._chosen = [n for n in self._chosen if n in names]       # keep the ticks made meanwhile
        self._render_candidates()
        local = [c for c in cands if c.summary().get("local")]
        missing = [n for n in self.preselected if n not in {c.name for c in local}]
        note = f"{len(local)} candidates on this machine"
        if missing:
            note += f"; not local (pull them on the registry screen first): {', '.join(missing)}"
        self.query_one("#w-cands-note", Static).update(escape(note))

    def _local(self) -> list[Any]:
        return sorted((c for c in self.registry if c.summary().get("local")), key=lambda c: (c.source != "zoo", c.name))

    def _render_candidates(self) -> None:
        from rich.text import Text

        rows = []
        for c in self._local():
            s = c.summary()
            rows.append({"key": c.name, "sel": Text("●", style="bold") if c.name in self._chosen else "",
                         "name": c.name, "arch": s.get("architecture") or "?", "layers": str(s.get("layers") or "?"),
                         "merge": Text("yes", style="green") if c.merge_supported else Text("no Base" if c.base is None
                                                                                           else "no", style="red")})
        self.query_one("#w-cands", SyncedTable).sync(rows)

    @on(DataTable.RowSelected, "#w-cands")
    def _cand_enter(self, event: DataTable.RowSelected) -> None:
        self.action_toggle_candidate()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_candidate":           # space means "tick" on the candidates step only
            return STEPS[self.step][0] == "cands"
        return True

    def action_toggle_candidate(self) -> None:
        key = self.query_one("#w-cands", SyncedTable).highlighted_key
        if key is None:
            return
        if key in self._chosen:
            self._chosen.remove(key)
        else:
            self._chosen.append(key)
        self._render_candidates()

    def selected(self) -> list[str]:
        """The ticked candidates, in the table's order."""
        return [c.name for c in self._local() if c.name in self._chosen]

    def _render_skips(self) -> None:
        by_name = {c.name: c for c in self.registry}
        lines = []
        enabled = self.query_one("#w-prune-on", Checkbox).value
        nobase = self.query_one("#w-prune-nobase", Checkbox).value
        for name in self.selected():
            c = by_name.get(name)
            if c is None:
                continue
            if not enabled:
                lines.append(f"{name}: skipped (pruning off)")
            elif c.merge_supported:
                lines.append(f"[green]{escape(name)}: pruned + sparse merge[/]")
            elif nobase:
                why = c.merge_reason.removeprefix("pruning skipped: ")
                lines.append(f"[yellow]{escape(name)}: layers dropped, merge skipped ({escape(why)})[/]")
            else:
                why = c.merge_reason if c.merge_reason.startswith("pruning skipped") else \
                    f"pruning skipped: {c.merge_reason}"
                lines.append(f"[red]{escape(name)}: {escape(why)}[/]")
        self.query_one("#w-prune-skips", Static).update("\n".join(lines) or "no candidate selected")

    @on(Select.Changed, "#w-comp-method")
    def _compressor(self, event: Select.Changed) -> None:
        about = dict(compressors()).get(str(event.value), "")
        self.query_one("#w-comp-about", Static).update(escape(about))

    @on(Checkbox.Changed)
    def _toggles(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id in ("w-prune-on", "w-prune-nobase"):
            self._render_skips()

    # -- dataset ----------------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#w-train")
    @on(Input.Blurred, "#w-train")
    def _train_entered(self, event: Any) -> None:
        path = self.query_one("#w-train", Input).value.strip()
        if path and (self.report is None or self.report.get("_for") != path):
            self.inspect(path)

    def action_browse(self) -> None:
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
            from damoc.data import inspect_dataset

            rep = inspect_dataset(Path(path).expanduser())
            rep["_for"] = path
            return rep
        bridge.run_job("inspect", run, self.post_message, path=path)

    def _show_report(self, rep: dict[str, Any]) -> None:
        self.report = rep
        lines = [f"[b]{escape(rep['format'])}[/b] ({escape(rep['file_type'])}): {rep['samples']} samples from "
                 f"{rep['records']} records" + (f", {rep['skipped']} skipped" if rep.get("skipped") else "")
                 + (f", {rep['multiple_choice']} multiple-choice" if rep.get("multiple_choice") else "")
                 + (f", {rep['with_context']} with context" if rep.get("with_context") else "")]
        total = rep.get("token_lengths", {}).get("total")
        if total:
            lines.append(f"length ({escape(rep['tokenizer'])} tokens): median {total['median']}, p95 {total['p95']}, "
                         f"max {total['max']}")
        probs = rep.get("problems", [])
        if probs:
            lines.append(f"[red]{len(probs)} problem(s):[/]")
            for p in probs[:8]:
                where = f"line {p['line']}" if p.get("line") is not None else "file"
                fld = f", field {p['field']!r}" if p.get("field") else ""
                lines.append(f"  {escape(p['severity'])}: {where}{escape(fld)}: {escape(p['message'])}")
            if len(probs) > 8:
                lines.append(f"  … {len(probs) - 8} more (damoc data inspect --json)")
        else:
            lines.append("[green]no problems found[/]")
        self.query_one("#w-data-report", Static).update("\n".join(lines))

    # -- filter -------------------------------------------------------------------------------------------------------
    @on(Input.Changed, "#w-filter-ratio")
    def _ratio(self, event: Input.Changed) -> None:
        value = _num(event.value)
        note = self.query_one("#w-ratio-note", Static)
        if isinstance(value, float) and value < 0.1:
            note.update(f"[b red]warning: {RATIO_WARNING}[/]")
        else:
            note.update(RATIO_WARNING)

    def filter_method(self) -> str:
        ol = self.query_one("#w-filter-method", OptionList)
        if ol.highlighted is None:
            return "graphcut"
        return str(ol.get_option_at_index(ol.highlighted).id)

    # -- the config ---------------------------------------------------------------------------------------------------
    def config_data(self) -> dict[str, Any]:
        """The run config as a dict, field by field from the form (validated by the library, not here: a bad number
        is passed through as text so the error names its setting)."""
        data: dict[str, Any] = {"candidates": self.selected(), "filter": {"method": self.filter_method()}}
        for wid, (key, kind) in FIELDS.items():
            widget = self.query_one(f"#{wid}")
            if widget.disabled:
                continue
            if kind == "bool":
                value: Any = bool(widget.value)
            elif kind == "select":
                value = "" if widget.value in (DEFAULT_SENTINEL, Select.BLANK) else widget.value
            else:
                text = str(widget.value).strip()
                if kind == "list_int":
                    value = [_num(p, int) for p in text.split(",") if p.strip()] or _get(self.defaults, key)
                elif kind in ("opt_int", "opt_float", "opt_str"):
                    value = None if not text else (text if kind == "opt_str" else
                                                   _num(text, int if kind == "opt_int" else float))
                elif kind in ("int", "float"):
                    value = _num(text, int if kind == "int" else float) if text else _get(self.defaults, key)
                else:
                    value = text
            _set(data, key, value)
        return data

    def build_config(self) -> Any:
        """Form values, then the `--set` style extras (checked against the schema, did-you-mean), validated."""
        from damoc.pipeline.config import apply_override, validate_config

        data = self.config_data()
        for item in self.query_one("#w-extra", Input).value.split():
            apply_override(data, item)
        return validate_config(data, "the wizard")

    @work(thread=True, group="wizard-plan", exclusive=True, exit_on_error=False)
    def check(self) -> None:
        """Validate the config and ask the library for the plan and the registry's pre-flight estimate."""
        def run() -> Any:
            config = self.build_config()
            return config, services.plan_run(self.settings, config)
        bridge.run_job("plan", run, self.post_message)

    def _show_plan(self, config: Any, plan: Any) -> None:
        self.config, self.plan = config, plan
        d = plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)
        n = len(config.candidates)
        lines = [f"[b]{escape(config.mode)}[/b] run of {n} candidate{'s' if n != 1 else ''} on "
                 f"{escape(Path(config.dataset.train).name)}: fine-tuning {escape(config.ft)}, seeds "
                 f"{', '.join(map(str, config.seeds))}, metric {escape(config.evaluate.metric)}"]
        cells = d.get("cells", [])
        lines.append(f"{len(cells)} cells: " + ", ".join(dict.fromkeys(c["stage"].rsplit("-s", 1)[0] for c in cells)))
        for c in d.get("candidates", []):
            if c.get("error"):
                lines.append(f"[red]{escape(c['name'])}: cannot run: {escape(c['error'])}[/]")
        for sk in getattr(plan, "skipped", []):
            lines.append(f"[yellow]skip[/] {escape(sk['candidate'])}/{escape(sk['stage'])}: {escape(sk['reason'])}")
        work = training_work(config, (self.report or {}).get("samples"))
        if work:
            lines.append(f"[b]time[/b] {escape(work)}")
        pf = d.get("preflight")
        if pf:
            lines.append("[b]pre-flight[/b] (disk, memory; formula in docs/registry.md)")
            lines.extend(preflight_lines(pf))
        for w in d.get("warnings", []):
            lines.append(f"[b yellow]warning:[/] {escape(w)}")
        lines.append("[dim]headless: ctrl+s saves this config, then damoc run --config FILE[/]")
        self.query_one("#w-preflight", Static).update("\n".join(lines))

    def on_job_done(self, message: JobDone) -> None:
        if message.job == "registry":
            if message.error:
                notify_error(self.app, message.error, message.hint, title="registry")
            else:
                self._fill_candidates(list(message.result or []))
            return
        if message.job == "inspect":
            if message.error:
                self.report = {"ok": False, "_for": message.extra.get("path")}
                self.query_one("#w-data-report", Static).update(
                    f"[red]{escape(message.error)}[/]" + (f"\n{escape(message.hint)}" if message.hint else ""))
            else:
                self._show_report(message.result)
            return
        if message.job == "plan":
            if message.error:
                self.config = self.plan = None
                self.query_one("#w-preflight", Static).update(
                    f"[red]{escape(message.error)}[/]" + (f"\n[dim]{escape(message.hint)}[/]" if message.hint else ""))
            else:
                self._show_plan(*message.result)
            return
        if message.job == "save":
            if message.error:
                notify_error(self.app, message.error, message.hint, title="save")
            else:
                self.notify(f"saved {message.result}\nrun it headless: damoc run --config {message.result}",
                            timeout=10)
            return
        if message.job == "launch":
            if message.error:
                notify_error(self.app, message.error, message.hint, title="launch")
                return
            run_id = getattr(message.result, "run_id", None) or str(message.result)
            self.launched = run_id
            self.app.pop_screen()
            self.app.open_run(run_id)  # type: ignore[attr-defined]

    def action_save(self) -> None:
        default = self.settings.home / "configs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.yaml"

        def chosen(values: dict[str, str] | None) -> None:
            if values and values.get("path"):
                path = Path(values["path"]).expanduser()
                self._job("save", lambda: _save(self.build_config(), path))
        self.app.push_screen(FormScreen("Save the run config", [("path", "File (.yaml, .toml or .json)",
                                                                 f"={default}")]), chosen)

    def action_launch(self) -> None:
        if self.config is None or self.plan is None:
            if STEPS[self.step][0] != "check":
                self.go_to("check")
            else:
                self.notify("fix the problems shown before launching", severity="warning")
            return
        runnable = [c for c in getattr(self.plan, "candidates", []) if not getattr(c, "error", "")]
        if not runnable:
            self.notify("no candidate can run (see the pre-flight sheet)", severity="error")
            return
        config = self.config
        self._job("launch", lambda: services.start_run(self.settings, config))

    @work(thread=True, group="wizard-actions", exit_on_error=False)
    def _job(self, job: str, fn: Any) -> None:
        bridge.run_job(job, fn, self.post_message)


def _save(config: Any, path: Path) -> str:
    from damoc.pipeline.config import save_config

    if path.suffix.lower() not in (".yaml", ".yml", ".toml", ".json"):
        raise DamocError(f"{path}: unknown config format", "use a .yaml, .toml or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(config, path)
    return str(path)


def preflight_lines(pf: dict[str, Any]) -> list[str]:
    """The registry's pre-flight estimate (`Preflight.to_dict()`) as short lines, one per candidate and a total."""
    from damoc.registry.models import human_bytes

    def mem(m: Any) -> str:
        return human_bytes(m["total"]) if isinstance(m, dict) and m.get("total") is not None else "?"

    out = []
    for c in pf.get("candidates", []):
        mm = c.get("memory") or {}
        dl = "local" if c.get("local") and not c.get("download_bytes") else \
            f"download {human_bytes(c.get('download_bytes'), approx=bool(c.get('download_estimated')))}"
        out.append(f"  {escape(str(c.get('name')))}: {dl} · memory calib {mem(mm.get('calibration'))}, full "
                   f"{mem(mm.get('full_ft'))}, LoRA {mem(mm.get('lora_ft'))} · run disk "
                   f"{human_bytes(c.get('work_disk_bytes'))}")
    t = pf.get("totals") or {}
    if t:
        avail = t.get("memory_available_bytes")
        out.append(f"  total: download {human_bytes(t.get('download_bytes'))}, run outputs "
                   f"{human_bytes(t.get('work_disk_bytes'))} (disk free {human_bytes(t.get('disk_free_bytes'))}), "
                   f"peak memory {human_bytes(t.get('peak_memory_bytes'))}"
                   + (f" of {human_bytes(avail)} available" if avail else "") + f" on {escape(str(pf.get('device')))}")
    for w in pf.get("warnings", []):
        out.append(f"  [yellow]{escape(str(w))}[/]")
    return out


def training_work(config: Any, samples: int | None) -> str:
    """Proxy training work against fine-tuning every candidate on the whole training set, from the fine-tune
    module's own step rule (`plan_steps`): optimizer steps x effective batch x the tokens kept by compression.
    Pruning saves more (layers removed are not known before the run); evaluation costs the same in both."""
    if config.mode != "damoc" or not samples:
        return ""
    from damoc.finetune.config import FinetuneConfig, plan_steps

    ds = config.dataset
    n = min(samples, ds.max_train) if ds.max_train else samples
    if not ds.test:
        n = max(1, round(n * (1 - ds.test_fraction)))
    f = config.filter
    proxy_n = n if not f.enabled else (min(n, f.count) if f.count else max(1, round(n * f.ratio)))
    keep = config.compress.rate if config.compress.enabled else 1.0
    method = config.methods[0]
    hp = getattr(config.finetune, method)
    micro = hp.micro_batch or 8

    def work(count: int, min_steps: int) -> tuple[int, float]:
        plan = plan_steps(count, FinetuneConfig(method=method, epochs=hp.epochs, effective_batch=hp.effective_batch,
                                                min_steps=min_steps), micro)
        return plan.total_steps, plan.total_steps * plan.effective_batch

    p_steps, p_work = work(proxy_n, config.finetune.proxy_min_steps)
    g_steps, g_work = work(n, 0)
    ratio = p_work * keep / g_work
    factor = f"≈{1 / ratio:.1f}x less" if ratio < 0.9 else ("about the same: the proxy's minimum step count "
                                                             "dominates on a set this small" if ratio <= 1.1 else
                                                             f"≈{ratio:.1f}x more: raise the sample count or lower "
                                                             "finetune.proxy_min_steps")
    return (f"proxy training ≈ {ratio:.0%} of fine-tuning every candidate on all {n} samples ({factor}; "
            f"{p_steps} proxy steps on {proxy_n} samples vs {g_steps}), before pruning")
