"""One-line top bar: the app name, the screens (with their keys) and how many runs are going right now."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SCREENS = (("registry", "1 Registry"), ("runs", "2 Runs"))


class TopBar(Static):
    def __init__(self, current: str) -> None:
        super().__init__(classes="bar topbar")
        self.current = current

    def on_mount(self) -> None:
        self.watch(self.app, "live_runs", self._live_changed, init=True)

    def _live_changed(self, live: tuple[str, ...]) -> None:
        self.update(self.render_bar(live))

    def render_bar(self, live: tuple[str, ...]) -> Text:
        t = Text()
        t.append(" damoc ", style="bold reverse")
        for key, label in SCREENS:
            t.append("  ")
            t.append(label, style="bold underline" if key == self.current else "dim")
        if live:
            t.append(f"   ● {len(live)} running (a: attach)", style="bold")
        t.append("   ?:help ctrl+p:commands", style="dim")
        return t
