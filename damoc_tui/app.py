"""The damoc terminal app: registry browser, run wizard, live run view, history.

The app never loads a model or runs a stage: runs are detached processes started through `damoc.facade` (the one
part of damoc it imports, with events, errors and settings), and the app follows their event logs (see bridge.py). Quitting it, or losing the SSH link, leaves runs going; reopening it
finds them (top bar, `a` to attach, the Runs screen).
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.worker import get_current_worker
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen

from damoc import facade
from damoc.errors import DamocError
from damoc.facade import Candidate
from damoc.settings import Settings
from damoc_tui import themes as theme_mod
from damoc_tui.commands import RunCommands
from damoc_tui.screens.help import HelpScreen
from damoc_tui.screens.history import HistoryScreen
from damoc_tui.screens.registry import RegistryScreen

KEYMAP_FILE = "keymap.toml"
STYLES = Path(__file__).resolve().parent / "styles"


def load_keymap(settings: Settings) -> tuple[dict[str, str], str]:
    """`<home>/keymap.toml`: binding id = "keys" (e.g. `"app.quit" = "q,ctrl+q"`), at top level or under [keys].

    Returns the map and a problem message ("" when fine); a bad file is reported, never fatal.
    """
    path = settings.home / KEYMAP_FILE
    if not path.is_file():
        return {}, ""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        return {}, f"{path}: not valid TOML ({e}); default keys used"
    data = data.get("keys", data)
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        return {}, f"{path}: values must be key strings like \"q,ctrl+q\" (bad: {', '.join(bad)})"
    return {str(k): str(v) for k, v in data.items()}, ""


class DamocApp(App[None]):
    TITLE = "damoc"
    SUB_TITLE = "pick the LLM to fine-tune"
    # absolute: Textual resolves relative paths against the module of the (sub)class being run
    CSS_PATH: ClassVar[list[str | Path]] = [STYLES / f"{n}.tcss" for n in ("app", "registry", "run", "history",
                                                                            "wizard")]
    MODES: ClassVar[dict[str, Any]] = {"registry": RegistryScreen, "runs": HistoryScreen}
    DEFAULT_MODE = "registry"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (110, "-wide")]
    # 24-line terminals (tmux over SSH): lists get the rows, detail panes shrink and scroll
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (30, "-tall")]
    COMMANDS = App.COMMANDS | {RunCommands}
    ENABLE_COMMAND_PALETTE = True
    live_runs: reactive[tuple[str, ...]] = reactive(())
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "soft_quit", "Quit", id="app.quit"),   # ctrl+q (textual's own binding) quits from anywhere
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        Binding("1", "switch_mode('registry')", "Registry", id="app.registry", show=False),
        Binding("2", "switch_mode('runs')", "Runs", id="app.runs", show=False),
        Binding("n,f5", "new_run", "New run", id="app.new_run"),
        Binding("a", "attach", "Attach", id="app.attach", show=False),
        Binding("f2", "cycle_theme", "Theme", id="app.theme", show=False),
    ]

    def __init__(self, settings: Settings | None = None, *, theme: str | None = None) -> None:
        from textual.theme import BUILTIN_THEMES

        self.settings = settings or Settings.load()
        self._requested_theme = theme
        loaded, bad = theme_mod.load_themes(self.settings)
        names = {t.name for t in loaded} | set(BUILTIN_THEMES)
        chosen = theme_mod.choose_theme(self.settings, theme, names)
        ansi = any(t.name == chosen and t.ansi for t in loaded) or (chosen in BUILTIN_THEMES and
                                                                      BUILTIN_THEMES[chosen].ansi)
        # Decided before App.__init__: textual picks its NO_COLOR filter there (NoColor keeps the terminal's own
        # colours for an ANSI theme; its Monochrome filter would turn the 16-colour theme black on black).
        super().__init__(ansi_color=True if ansi else None)
        self.startup_problems: list[str] = []
        for t in loaded:
            self.register_theme(t)
        self.startup_problems += [f"theme skipped: {p}" for p in bad]
        if theme and chosen != theme:
            self.startup_problems.append(f"unknown theme {theme!r}; known: {', '.join(self.theme_names())}")
        self.theme = chosen
        keymap, problem = load_keymap(self.settings)
        if problem:
            self.startup_problems.append(problem)
        if keymap:
            self.set_keymap(keymap)
        self.selected_candidates: list[str] = []  # chosen on the registry screen for the next run
        self.known_candidates: list[str] = []     # for the command palette
        self.registry_snapshot: list[Candidate] = []  # the registry screen's last read (the wizard starts from it)

    # -- lifecycle ----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        for p in self.startup_problems:
            self.notify(p, severity="warning", timeout=8)
        self.scan_live_runs()

    @work(thread=True, group="runs-watch", exit_on_error=False, description="watch for running runs")
    def scan_live_runs(self) -> None:
        """Which runs are going (top bar, `a`); on start, say so: a user back from a dropped SSH link reattaches."""
        stop = get_current_worker().cancelled_event   # set when the app exits
        first = True
        while not stop.is_set():
            live = tuple(rd.run_id for rd in facade.run_dirs(self.settings) if rd.is_alive())
            self.call_from_thread(self._set_live, live, first)
            first = False
            stop.wait(3.0)

    def _set_live(self, live: tuple[str, ...], announce: bool) -> None:
        self.live_runs = live
        if announce and live:
            more = f" (+{len(live) - 1} more)" if len(live) > 1 else ""
            self.notify(f"run {live[-1]}{more} is still going: press a to attach", title="running", timeout=10)

    # -- themes ---------------------------------------------------------------------------------------
    def theme_names(self) -> list[str]:
        return sorted(n for n in self.available_themes if n.startswith("damoc-")) + sorted(
            n for n in self.available_themes if not n.startswith("damoc-"))

    def action_cycle_theme(self) -> None:
        names = [n for n in self.theme_names() if n.startswith("damoc-")] or self.theme_names()
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme {self.theme}", timeout=2)

    # -- actions --------------------------------------------------------------------------------------
    # Plain-letter keys that leave the current screen are off in forms and dialogs, where a stray key must not
    # quit, switch screens or start something (ctrl+q still quits from anywhere).
    _SCREEN_LEAVING = frozenset({"soft_quit", "switch_mode", "new_run", "attach"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from textual.screen import ModalScreen

        from damoc_tui.screens.wizard import WizardScreen

        if action in self._SCREEN_LEAVING and isinstance(self.screen, (WizardScreen, ModalScreen)):
            return False
        return True

    def action_soft_quit(self) -> None:
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_run(self) -> None:
        from damoc_tui.screens.wizard import WizardScreen

        self.push_screen(WizardScreen(candidates=list(self.selected_candidates)))

    def action_attach(self, run_id: str | None = None) -> None:
        """Open the live view of `run_id`, else of the newest running run, else of the newest run."""
        if run_id is None:
            runs = facade.run_dirs(self.settings)
            if not runs:
                self.notify("no runs yet: press n to start one", severity="warning")
                return
            live = [r for r in runs if r.is_alive()]
            run_id = (live or runs)[-1].run_id
        self.open_run(run_id)

    def open_run(self, run_id: str) -> None:
        from damoc_tui.screens.run import RunScreen

        self.push_screen(RunScreen(run_id))

    def show_candidate(self, name: str) -> None:
        """Command palette: the registry screen, cursor on `name`."""
        def focus() -> None:
            if isinstance(self.screen, RegistryScreen):
                self.screen.show(name)
        self.switch_mode("registry")
        self.call_after_refresh(focus)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Registry", "Candidates and their capability flags (1)",
                            lambda: self.switch_mode("registry"))
        yield SystemCommand("Runs", "Past and running runs, export, compare, hand-off (2)",
                            lambda: self.switch_mode("runs"))
        yield SystemCommand("New run", "Walk the run wizard (n / F5)", self.action_new_run)
        yield SystemCommand("Attach", "Follow the newest running run (a)", self.action_attach)
        yield SystemCommand("Help", "Keys, screens and SSH/tmux tips (? / F1)", self.action_help)
        yield SystemCommand("Next damoc theme", "Cycle damoc-dark, damoc-light, damoc-ansi (F2)",
                            self.action_cycle_theme)


def run_app(settings: Settings, theme: str | None = None, mouse: bool = True) -> None:
    """Entry point of `damoc tui` (and bare `damoc`)."""
    if os.environ.get("TERM", "") == "dumb":
        raise DamocError("the terminal app needs a real terminal (TERM=dumb)",
                         "run it from an interactive terminal, or use the CLI (damoc --help)")
    DamocApp(settings, theme=theme).run(mouse=mouse)
