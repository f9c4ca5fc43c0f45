"""The error hierarchy. Every error a user can cause carries a one-line reason and a next step."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class DamocError(Exception):
    """Base class: `str(err)` is the reason, `err.hint` says what to do next."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(DamocError):
    """A setting or run configuration is invalid."""


class DataError(DamocError):
    """A dataset file cannot be read or has bad records."""

    def __init__(self, message: str, hint: str | None = None, *, path: str | None = None,
                 line: int | None = None, field: str | None = None) -> None:
        where = path or ""
        if line is not None:
            where += f":{line}"
        if field:
            where += f" (field {field!r})"
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.path, self.line, self.field = path, line, field


class UnknownNameError(DamocError, KeyError):
    """A name that is not registered; suggests the close ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]) -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else (
            f"known: {', '.join(sorted(known))}" if known and len(known) <= 20 else None)
        super().__init__(f"unknown {kind} {name!r}", hint)
        self.kind, self.name, self.suggestions = kind, name, close


class StageFailed(DamocError):
    """A pipeline stage failed for one candidate."""


class Cancelled(DamocError):
    """Work was cancelled by the user (Ctrl-C, SIGTERM, or the TUI)."""
