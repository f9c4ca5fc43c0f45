"""The damoc terminal app: registry browser, run wizard, live run view, history.

The app never loads a model or runs a stage: runs are detached processes started through `damoc.facade` (the one
part of damoc it imports, with events, errors and settings), and the app follows their event logs (see bridge.py). Quitting it, or losing the SSH link, leaves runs going; reopening it
finds them (top bar, `a` to attach, the Runs screen).
"""
from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

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
from damoc_tui.followers import Loop, RunFollowers
from damoc_tui.messages import LiveRuns
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
        Binding("1", "show_mode('registry')", "Registry", id="app.registry", show=False),
        Binding("2", "show_mode('runs')", "Runs", id="app.runs", show=False),
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
        if "NO_COLOR" in os.environ:       # focus and choices get non-colour marks (styles/app.tcss)
            self.add_class("-no-color")
        keymap, problem = load_keymap(self.settings)
        if problem:
            self.startup_problems.append(problem)
        if keymap:
            self.set_keymap(keymap)
        self.selected_candidates: list[str] = []  # chosen on the registry screen for the next run
        self.known_candidates: list[str] = []     # for the command palette
        self.registry_snapshot: list[Candidate] = []  # the registry screen's last read (the wizard starts from it)
        self.followers = RunFollowers(self.settings.refresh_hz)   # one event follower per run, shared by its views
        self._live_watch: Loop | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        for p in self.startup_problems:
            self.notify(p, severity="warning", timeout=8)
        self._live_watch = Loop("watch live runs", self._scan_live_runs)

    def on_unmount(self) -> None:
        if self._live_watch is not None:
            self._live_watch.stop()
        self.followers.stop_all()

    def _scan_live_runs(self, stop: threading.Event) -> None:
        """Which runs are going (top bar, `a`), every 3 s on its own thread; on start, say so: a user back from a
        dropped SSH link reattaches."""
        first = True
        while not stop.is_set():
            try:
                live = tuple(rd.run_id for rd in facade.run_dirs(self.settings) if rd.is_alive())
            except (DamocError, OSError):
                live = ()
            self.post_message(LiveRuns(live, first))
            first = False
            stop.wait(3.0)

    def on_live_runs(self, message: LiveRuns) -> None:
        self.live_runs = message.runs
        live = message.runs
        if message.first and live:
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
    _SCREEN_LEAVING = frozenset({"soft_quit", "switch_mode", "show_mode", "new_run", "attach"})

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

    # -- navigation: each list screen is the base of its mode; at most one screen (a run view, help) above it ----
    async def action_show_mode(self, mode: str) -> None:
        """`1`/`2`: the Registry or Runs list itself, whatever was open above it (never a run view left there)."""
        self._close_above_base()
        await self.switch_mode(mode)
        self._close_above_base()

    def _close_above_base(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def open_run(self, run_id: str) -> None:
        """The live view of `run_id`: one view per run. Already in front, it stays; any other view above the list
        (another run's, help) is closed first, so views never pile up behind each other."""
        from damoc_tui.screens.run import RunScreen

        top = self.screen
        if isinstance(top, RunScreen) and run_id in (top.run_id, top.requested_id):
            self.notify(f"already showing run {top.run_id}", timeout=2)
            return
        self._close_above_base()
        self.push_screen(RunScreen(run_id))

    def show_candidate(self, name: str) -> None:
        """Command palette: the registry screen, cursor on `name`."""
        async def go() -> None:
            await self.action_show_mode("registry")
            if isinstance(self.screen, RegistryScreen):
                self.screen.show(name)
        self.call_later(go)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Registry", "Candidates and their capability flags (1)",
                            lambda: self.run_action("show_mode('registry')"))
        yield SystemCommand("Runs", "Past and running runs, export, compare, hand-off (2)",
                            lambda: self.run_action("show_mode('runs')"))
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
