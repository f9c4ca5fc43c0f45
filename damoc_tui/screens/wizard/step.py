"""What every wizard step is: a scrolling pane of the form, shown one at a time by the wizard's content switcher."""
from __future__ import annotations

from typing import ClassVar

from textual.containers import VerticalScroll

from damoc_tui.screens.wizard.forms import Form


class Step(VerticalScroll):
    key: ClassVar[str]               # the pane's id is step-<key>
    title: ClassVar[str]             # in the step bar
    first: ClassVar[str]             # the widget focused when the step is shown

    def __init__(self, form: Form) -> None:
        super().__init__(id=f"step-{self.key}", classes="step")
        self.form = form

    def problem(self) -> str:
        """Why the wizard cannot go on from this step ("" when it can)."""
        return ""
