"""Help: every key of every screen (generated from the bindings, with the user's keymap applied), and the SSH/tmux
notes. The binding ids in the table are what `<home>/keymap.toml` remaps."""
from __future__ import annotations

from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

TIPS = """\
**Over SSH and in tmux**

- Every action has a plain key; nothing needs ctrl+enter, Cmd or Option. Esc is never the only way out
  (q / backspace close screens). In tmux, `set -sg escape-time 10` makes Esc snappy.
- Copy (`y`) uses OSC 52, which reaches your *local* clipboard over SSH. In tmux add `set -g set-clipboard on`.
  Every copy is also saved to a file under the run directory, in case your terminal ignores OSC 52.
- Runs are separate processes: quit the app or lose the link and they keep going. Reopen `damoc tui` and press
  `a` (or pick the run on the Runs screen) to reattach.
- `damoc tui --no-mouse` leaves the terminal's own text selection working. `--theme damoc-ansi` (chosen by itself on
  16-colour terminals and when `NO_COLOR` is set) uses the terminal's palette; `F2` cycles themes.
- Themes: TOML/YAML files in `damoc locate themes`. Keys: `keymap.toml` in `damoc locate home`, e.g.
  `"app.quit" = "q,ctrl+q"` (the binding ids are in the table above).
"""


def binding_rows(app: Any) -> list[tuple[str, str, str, str]]:
    """(screen, keys, description, id) for every binding with an id, after the keymap."""
    from damoc_tui.app import DamocApp
    from damoc_tui.screens.history import HistoryScreen
    from damoc_tui.screens.registry import RegistryScreen
    from damoc_tui.screens.run import RunScreen
    from damoc_tui.screens.wizard import WizardScreen

    keymap = getattr(app, "_keymap", {}) or {}
    rows = []
    for title, cls in (("everywhere", DamocApp), ("registry", RegistryScreen), ("run wizard", WizardScreen),
                       ("live run", RunScreen), ("runs", HistoryScreen)):
        for b in cls.BINDINGS:
            if not isinstance(b, Binding) or not b.id:
                continue
            keys = keymap.get(b.id, b.key)
            rows.append((title, keys.replace("question_mark", "?"), b.description or b.action, b.id))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1,backspace", "dismiss", "Close", id="help.close"),
    ]

    def compose(self) -> ComposeResult:
        from rich.table import Table

        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        table.add_column("where", no_wrap=True)
        table.add_column("keys", no_wrap=True, style="bold")
        table.add_column("does")
        table.add_column("id (keymap)", style="dim", no_wrap=True)
        for where, keys, desc, bid in binding_rows(self.app):
            table.add_row(where, escape(keys), escape(desc), bid)
        with VerticalScroll(id="help-body"):
            yield Static("[b]damoc[/b] keys  [dim](ctrl+p: command palette, q/esc: close)[/]", id="help-title")
            yield Static(table, id="help-keys")
            yield Markdown(TIPS, id="help-tips")
