"""The wizard's form: each field is bound to one run-config setting, built with that setting's default and
description, and read back as that setting's type (from the run config's schema, through `damoc.facade.setting`).

Text that does not parse (a letter in a number) is passed through as it is: the config validation then reports it
with the setting's name, as `damoc run --set` does.
"""
from __future__ import annotations

from typing import Any

from textual.dom import DOMNode
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Select

from damoc import facade
from damoc.facade import Setting
from damoc_tui.widgets.tickbox import TickBox

DEFAULT = "__default__"        # the Select value that stands for "" (the module's own default)


class Form:
    def __init__(self) -> None:
        self.fields: dict[str, Setting] = {}          # widget id -> the setting it edits

    def _bind(self, widget_id: str, key: str) -> Setting:
        spec = facade.setting(key)
        self.fields[widget_id] = spec
        return spec

    def input(self, key: str, *, id: str, value: str | None = None, placeholder: str = "",
              classes: str = "") -> Input:
        spec = self._bind(id, key)
        return Input(value=_text(spec.default) if value is None else value, placeholder=placeholder, id=id,
                     classes=classes, compact=True, tooltip=spec.description or None)

    def tick(self, key: str, label: str, *, id: str) -> TickBox:
        spec = self._bind(id, key)
        return TickBox(label, bool(spec.default), id=id, compact=True, tooltip=spec.description or None)

    def select(self, key: str, options: list[tuple[str, str]], *, id: str) -> Select[str]:
        """`options`: (label, value); the value "" (the module's default) is offered as DEFAULT."""
        spec = self._bind(id, key)
        return Select([(label, value or DEFAULT) for label, value in options], value=spec.default or DEFAULT,
                      id=id, compact=True, allow_blank=False, tooltip=spec.description or None)

    def values(self, root: DOMNode) -> dict[str, Any]:
        """Every field's value as a nested run-config dict."""
        data: dict[str, Any] = {}
        for widget_id, spec in self.fields.items():
            _set(data, spec.key, read(root.query_one(f"#{widget_id}", Widget), spec))
        return data


    def fill(self, root: DOMNode, data: dict[str, Any]) -> list[str]:
        """Set every field from a run-config dict (a saved file's, a past run's); returns the `KEY=VALUE` items
        of the settings that differ from `defaults` but have no field (for the *more settings* line)."""
        for widget_id, spec in self.fields.items():
            found, value = _get(data, spec.key)
            if not found:
                continue
            widget = root.query_one(f"#{widget_id}", Widget)
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                widget.value = value or DEFAULT
            elif isinstance(widget, Input):
                widget.value = _text(value)
        return []


def _get(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def extras(data: dict[str, Any], defaults: dict[str, Any], covered: set[str], prefix: str = "") -> list[str]:
    """`KEY=VALUE` for each leaf of `data` that differs from `defaults` and is not in `covered` (JSON values, as
    `damoc run --set` reads them)."""
    import json

    out: list[str] = []
    for k, v in data.items():
        key = f"{prefix}{k}"
        d = defaults.get(k) if isinstance(defaults, dict) else None
        if isinstance(v, dict) and v and isinstance(d, dict):
            out += extras(v, d, covered, key + ".")
        elif key not in covered and v != d:
            out.append(f"{key}={json.dumps(v, separators=(',', ':'))}")
    return out


def read(widget: Widget, spec: Setting) -> Any:
    if isinstance(widget, Checkbox):
        return bool(widget.value)
    if isinstance(widget, Select):
        return "" if widget.value in (DEFAULT, Select.BLANK) else widget.value
    assert isinstance(widget, Input)
    return parse(widget.value, spec)


def parse(text: str, spec: Setting) -> Any:
    """A field's text as the setting's value: empty means None for an optional setting, else the default."""
    text = text.strip()
    if not text:
        return None if spec.optional else spec.default
    if spec.type is list:
        return [number(p, spec.item or str) for p in text.split(",") if p.strip()] or spec.default
    if spec.type in (int, float):
        return number(text, spec.type)
    return text


def number(text: str, kind: type) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text            # left for the config validation to report with the setting's name


def _text(default: Any) -> str:
    if default is None:
        return ""
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    return str(default)


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value
