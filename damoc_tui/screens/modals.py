"""Small modal screens: confirm, one-line prompt, a form of labelled inputs, a choice list, a text viewer with
copy (OSC 52) and save. Each returns its result through `dismiss` (None when cancelled)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from damoc_tui.messages import JobDone
from damoc_tui.widgets.keylist import KeyList


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape,q", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, detail: str = "", yes: str = "Yes", no: str = "No") -> None:
        super().__init__(classes="modal")
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]{escape(self.question)}[/b]", classes="dialog-title")
            if self.detail:
                yield Static(escape(self.detail), classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class FormScreen(ModalScreen[dict[str, str] | None]):
    """Labelled one-line inputs; enter on the last field (or ctrl+s) submits, esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="form.cancel"),
        Binding("ctrl+s,ctrl+j", "submit", "OK", id="form.submit"),
    ]

    def __init__(self, title: str, fields: list[tuple[str, str, str]], note: str = "") -> None:
        """fields: (key, label, placeholder-or-initial). A placeholder starting with '=' is an initial value."""
        super().__init__(classes="modal")
        self.title_text, self.fields, self.note = title, fields, note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]{escape(self.title_text)}[/b]", classes="dialog-title")
            for key, label, hint in self.fields:
                yield Label(label)
                value = hint[1:] if hint.startswith("=") else ""
                yield Input(value=value, placeholder="" if hint.startswith("=") else hint, id=f"f-{key}")
            if self.note:
                yield Static(escape(self.note), classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK (ctrl+s)", id="ok", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        idx = inputs.index(event.input)
        if idx + 1 < len(inputs):
            inputs[idx + 1].focus()
        else:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        self.dismiss({key: self.query_one(f"#f-{key}", Input).value.strip() for key, _, _ in self.fields})

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "cancel", "Cancel", id="choice.cancel")]

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        """choices: (value, label)."""
        super().__init__(classes="modal")
        self.title_text, self.choices = title, choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"[b]{escape(self.title_text)}[/b]", classes="dialog-title")
            yield KeyList(*[Option(escape(label), id=value) for value, label in self.choices], id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen[None]):
    """A read-only text (hand-off config, an export, a report) with copy to clipboard and save to file."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,backspace", "close", "Close", id="text.close"),
        Binding("y", "copy", "Copy (OSC 52)", id="text.copy"),
        Binding("s", "save", "Save", id="text.save"),
    ]

    def __init__(self, title: str, text: str, save_path: Path | None = None, language: str | None = None) -> None:
        super().__init__(classes="modal")
        self.title_text, self.text, self.save_path, self.language = title, text, save_path, language

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Static(f"[b]{escape(self.title_text)}[/b]  [dim]y copy · s save · q close[/]",
                         classes="dialog-title")
            yield TextArea(self.text, read_only=True, id="text-body", language=self.language,
                           soft_wrap=False, show_line_numbers=False, compact=True)
            yield Static(f"s saves to {escape(str(self.target()))}", classes="dialog-detail")

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)  # OSC 52: reaches the local clipboard over SSH
        where = self._save()
        extra = f"; also saved to {where}" if where else ""
        self.notify(f"copied {len(self.text)} characters (OSC 52){extra}", timeout=4)

    def action_save(self) -> None:
        where = self._save()
        if where:
            self.notify(f"saved {where}", timeout=6)

    def target(self) -> Path:
        """Where this text is saved: the caller's file (next to the run), else `<home>/copies/<title>.txt`, so every
        copy is also a file (for terminals that ignore OSC 52)."""
        if self.save_path is not None:
            return self.save_path
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", self.title_text).strip("-")[:80] or "copy"
        return self.app.settings.home / "copies" / f"{slug}.txt"  # type: ignore[attr-defined]

    def _save(self) -> Path | None:
        path = self.target()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.text, encoding="utf-8")
        except OSError as e:
            self.notify(f"cannot save {path}: {e}", severity="error")
            return None
        return path


def error_text(error: str, hint: str = "") -> str:
    return error + (f"\nhint: {hint}" if hint else "")


def notify_error(widget: Any, error: str, hint: str = "", title: str = "error") -> None:
    widget.notify(error_text(error, hint), title=title, severity="error", timeout=10)


def failed(widget: Any, message: JobDone[Any]) -> bool:
    """Whether the job failed; if it did, its error is shown as a notification titled with the job."""
    if message.error:
        notify_error(widget.app, message.error, message.hint, title=message.title)
    return bool(message.error)
