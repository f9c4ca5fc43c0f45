"""A checkbox whose state reads without colour: `[x]` / `[ ]` (textual's own shows the same glyph for both and
tells them apart by colour only, which a 16-colour terminal or NO_COLOR loses)."""
from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class TickBox(Checkbox):
    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble("[", ("x" if self.value else " ", style), "]")
