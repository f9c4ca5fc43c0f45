"""The run wizard: one step at a time (candidates, dataset, filter, compress, prune, fine-tune, pre-flight), then
launch. Every field maps to one setting of the run config (see forms.py), so the same config can be saved as a
file and run headless with `damoc run --config FILE`."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Checkbox, ContentSwitcher, Footer, Static

from damoc import facade
from damoc.errors import DamocError
from damoc.facade import Plan, RunConfig
from damoc_tui import bridge
from damoc_tui.messages import ConfigLoaded, ConfigSaved, JobDone, PlanChecked, RegistryRead, RunLaunched
from damoc_tui.screens.modals import ChoiceScreen, FormScreen, failed
from damoc_tui.screens.wizard.candidates_step import CandidatesStep
from damoc_tui.screens.wizard.check_step import CheckStep
from damoc_tui.screens.wizard.compress_step import CompressStep
from damoc_tui.screens.wizard.data_step import DataStep
from damoc_tui.screens.wizard.filter_step import FilterStep
from damoc_tui.screens.wizard.forms import Form
from damoc_tui.screens.wizard.prune_step import PruneStep
from damoc_tui.screens.wizard.step import Step
from damoc_tui.screens.wizard.train_step import TrainStep

CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
WIDE = 110                     # from this width on, the step bar names every step


class WizardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+j,pagedown", "next_step", "Next", id="wizard.next", priority=True),
        Binding("pageup", "prev_step", "Back", id="wizard.prev", priority=True),
        Binding("f5,ctrl+r", "launch", "Launch", id="wizard.launch", priority=True),
        Binding("ctrl+s", "save", "Save", id="wizard.save", priority=True),
        Binding("ctrl+o", "browse", "Browse", id="wizard.browse"),
        Binding("ctrl+l", "load", "Load", id="wizard.load", priority=True),
        Binding("escape", "close", "Close", id="wizard.close"),
        Binding("space", "toggle_candidate", "Tick", id="wizard.tick", show=False),
    ]

    def __init__(self, candidates: list[str] | None = None, dataset: str = "") -> None:
        super().__init__()
        self.form = Form()
        self.cands_step = CandidatesStep(self.form, list(candidates or []))
        self.data_step = DataStep(self.form, dataset)
        self.filter_step = FilterStep(self.form)
        self.prune_step = PruneStep(self.form)
        self.train_step = TrainStep(self.form)
        self.check_step = CheckStep(self.form)
        self.steps: list[Step] = [self.cands_step, self.data_step, self.filter_step, CompressStep(self.form),
                                  self.prune_step, self.train_step, self.check_step]
        self.step = 0
        self.plan: Plan | None = None
        self.config: RunConfig | None = None
        self.launched: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="wiz-steps", classes="bar topbar")
        with ContentSwitcher(initial=self.steps[0].id, id="wiz-body"):
            yield from self.steps
        with Horizontal(id="wiz-nav"):
            yield Button("◀ Back (pgup)", id="w-prev", compact=True)
            yield Static("", id="wiz-error")
            yield Button("Next (pgdn/ctrl+j) ▶", id="w-next", compact=True, variant="primary")
        yield Footer(compact=True, show_command_palette=False)   # ctrl+p is in the help; 80 columns hold every key

    def on_mount(self) -> None:
        self.settings = self.app.settings  # type: ignore[attr-defined]
        self._show_step()
        snapshot = self.app.registry_snapshot  # type: ignore[attr-defined]
        if snapshot:
            self.cands_step.fill(list(snapshot))    # at once; the fresh list replaces it when read
        self.load_registry()
        if self.data_step.dataset:
            self.inspect(self.data_step.dataset)

    # -- steps ------------------------------------------------------------------------------------------------------
    @property
    def current(self) -> Step:
        return self.steps[self.step]

    def _show_step(self) -> None:
        step = self.current
        self.query_one("#wiz-body", ContentSwitcher).current = step.id
        self.refresh_bindings()
        wide = self.app.size.width >= WIDE
        parts = [f"[b reverse] {i + 1} {s.title} [/]" if i == self.step else
                 f"[dim]{i + 1}{' ' + s.title if wide else ''}[/]" for i, s in enumerate(self.steps)]
        self.query_one("#wiz-steps", Static).update(" New run  " + " ".join(parts))
        self.query_one("#w-next", Button).label = "Launch (F5) ▶" if step is self.check_step else \
            "Next (pgdn/ctrl+j) ▶"
        self.query_one("#wiz-error", Static).update("")
        if step is self.prune_step:
            self._render_skips()
        if step is self.check_step:
            self.check()
        self.query_one(step.first).focus()

    def action_next_step(self) -> None:
        if self.current is self.check_step:
            self.action_launch()
            return
        problem = self.current.problem()
        if problem:
            self.query_one("#wiz-error", Static).update(f"[red]{escape(problem)}[/]")
            return
        self.step = min(self.step + 1, len(self.steps) - 1)
        self._show_step()

    def action_prev_step(self) -> None:
        self.step = max(self.step - 1, 0)
        self._show_step()

    def go_to(self, key: str) -> None:
        self.step = [s.key for s in self.steps].index(key)
        self._show_step()

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

    def action_browse(self) -> None:
        self.data_step.browse()

    # -- candidates, dataset, filter --------------------------------------------------------------------------------
    @work(thread=True, group="wizard-io", exit_on_error=False)
    def load_registry(self) -> None:
        bridge.run_job(RegistryRead, lambda: facade.registry_candidates(self.settings), self.post_message)

    def on_registry_read(self, message: RegistryRead) -> None:
        if not failed(self, message) and message.result is not None:
            self.cands_step.fill(message.result)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_candidate":           # space means "tick" on the candidates step only
            return self.current is self.cands_step
        return True

    def action_toggle_candidate(self) -> None:
        self.cands_step.toggle()

    def selected(self) -> list[str]:
        """The ticked candidates, in the table's order."""
        return [c.name for c in self.cands_step.selected()]

    def inspect(self, path: str) -> None:
        self.data_step.inspect(path)

    def filter_method(self) -> str:
        return self.filter_step.method()

    # -- prune ------------------------------------------------------------------------------------------------------
    @on(Checkbox.Changed)
    def _toggles(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id in ("w-prune-on", "w-prune-nobase"):
            self._render_skips()

    def _render_skips(self) -> None:
        try:
            config = self.build_config()
        except DamocError as e:
            self.prune_step.show(f"[red]{escape(e.message)}[/]")
            return
        self.prune_step.show_outlook(config, self.cands_step.selected())

    # -- the config -------------------------------------------------------------------------------------------------
    def config_data(self) -> dict[str, Any]:
        """The run config as a dict, setting by setting from the form (validated by the library, not here)."""
        data = self.form.values(self)
        data["candidates"] = self.selected()
        data["filter"]["method"] = self.filter_method()
        return data

    def build_config(self) -> RunConfig:
        """Form values, then the `--set` style extras, validated."""
        data = self.config_data()
        self.train_step.apply_extra(data)
        return facade.validate_config(data, "the wizard")

    @work(thread=True, group="wizard-plan", exclusive=True, exit_on_error=False)
    def check(self) -> None:
        """Validate the config and ask the library for the plan and the registry's pre-flight estimate."""
        def run() -> tuple[RunConfig, Plan]:
            config = self.build_config()
            return config, facade.plan_run(self.settings, config)
        bridge.run_job(PlanChecked, run, self.post_message)

    def on_plan_checked(self, message: PlanChecked) -> None:
        if message.error or message.result is None:
            self.config = self.plan = None
            self.check_step.show_error(message.error, message.hint)
            return
        self.config, self.plan = message.result
        self.check_step.show_plan(self.config, self.plan, self.data_step.samples)

    def action_save(self) -> None:
        default = self.settings.home / "configs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.yaml"

        def chosen(values: dict[str, str] | None) -> None:
            if values and values.get("path"):
                path = Path(values["path"]).expanduser()
                self._job(ConfigSaved, lambda: save(self.build_config(), path))
        self.app.push_screen(FormScreen("Save the run config", [("path", "File (.yaml, .toml or .json)",
                                                                 f"={default}")]), chosen)

    def action_load(self) -> None:
        """Start from a saved config file or from a past run's config (the newest first)."""
        configs = sorted((p for p in (self.settings.home / "configs").glob("*") if p.suffix in CONFIG_SUFFIXES),
                         key=lambda p: p.stat().st_mtime, reverse=True)[:8]
        runs = list(reversed(facade.run_dirs(self.settings)))[:8]
        choices = [(f"run:{rd.run_id}", f"{'last run' if i == 0 else 'run'} {rd.run_id}  "
                    f"{rd.config.get('mode', '')}  {rd.config.get('label') or ''}".rstrip()) for i, rd in enumerate(runs)]
        choices += [(f"file:{p}", f"saved {p.name}") for p in configs]
        choices.append(("ask", "another file…"))

        def chosen(value: str | None) -> None:
            if value == "ask":
                def typed(values: dict[str, str] | None) -> None:
                    if values and values.get("path"):
                        self._job(ConfigLoaded, lambda: facade.load_config(Path(values["path"]).expanduser()))
                self.app.push_screen(FormScreen("Load a run config", [("path", "File (.yaml, .toml or .json)",
                                                                       "")]), typed)
            elif value and value.startswith("file:"):
                self._job(ConfigLoaded, lambda: facade.load_config(Path(value[5:])))
            elif value and value.startswith("run:"):
                rd = next(r for r in runs if r.run_id == value[4:])
                self._job(ConfigLoaded, lambda: facade.validate_config(rd.config, f"run {rd.run_id}"))
        self.app.push_screen(ChoiceScreen("Start from", choices), chosen)

    def on_config_loaded(self, message: ConfigLoaded) -> None:
        if failed(self, message) or message.result is None:
            return
        self.apply_config(message.result)

    def apply_config(self, config: RunConfig) -> None:
        """Fill every step from `config`: the fields, the ticked candidates, the filter method, and the settings
        without a field on the *more settings* line."""
        from damoc_tui.screens.wizard.forms import extras

        data = config.to_dict()
        self.form.fill(self, data)
        self.cands_step.chosen = [str(c) for c in data.get("candidates") or []]
        self.cands_step.preselected = list(self.cands_step.chosen)
        self.cands_step.fill(self.cands_step.registry)
        known = {c.name for c in self.cands_step.local()}
        gone = [c for c in data.get("candidates") or [] if str(c) not in known]
        self.filter_step.choose(str(data.get("filter", {}).get("method") or ""))
        covered = {spec.key for spec in self.form.fields.values()} | {"candidates", "filter.method"}
        self.train_step.set_extra(extras(data, facade.RunConfig().to_dict(), covered))
        train = str(data.get("dataset", {}).get("train") or "")
        if train:
            self.inspect(train)
        self.config = self.plan = None
        self.notify(f"loaded: {len(self.cands_step.chosen)} candidates, dataset {train or '(none)'}"
                    + (f"; not on this machine, left out: {', '.join(map(str, gone))}" if gone else ""),
                    severity="warning" if gone else "information")
        self.go_to(self.cands_step.key)

    def on_config_saved(self, message: ConfigSaved) -> None:
        if not failed(self, message):
            self.notify(f"saved {message.result}\nrun it headless: damoc run --config {message.result}", timeout=10)

    def action_launch(self) -> None:
        if self.config is None or self.plan is None:
            if self.current is not self.check_step:
                self.go_to(self.check_step.key)
            else:
                self.notify("fix the problems shown before launching", severity="warning")
            return
        if not self.plan.runnable:
            self.notify("no candidate can run (see the pre-flight sheet)", severity="error")
            return
        config = self.config
        self._job(RunLaunched, lambda: facade.start_run(self.settings, config, detach=True))

    def on_run_launched(self, message: RunLaunched) -> None:
        if failed(self, message) or message.result is None:
            return
        self.launched = message.result.run_id
        self.app.pop_screen()
        self.app.open_run(self.launched)  # type: ignore[attr-defined]

    @work(thread=True, group="wizard-actions", exit_on_error=False)
    def _job(self, done: Callable[..., JobDone[Any]], work: Callable[[], Any]) -> None:
        bridge.run_job(done, work, self.post_message)


def save(config: RunConfig, path: Path) -> Path:
    if path.suffix.lower() not in CONFIG_SUFFIXES:
        raise DamocError(f"{path}: unknown config format", "use a .yaml, .toml or .json file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    facade.save_config(config, path)
    return path
