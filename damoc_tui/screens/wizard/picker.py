"""Browse for a dataset file (enter picks, esc cancels)."""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Static


class FilePicker(ModalScreen[str | None]):
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
