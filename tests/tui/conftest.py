"""Fixtures of the terminal-app tests: an app on an isolated DAMOC_HOME with an empty Hugging Face cache (so the
catalog's flags do not depend on what this machine has downloaded), and a helper to wait for a condition."""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return cache


@pytest.fixture
def make_app(settings):
    from damoc_tui.app import DamocApp

    def factory(theme: str = "damoc-dark"):
        return DamocApp(settings, theme=theme)
    return factory


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition",
                   explain: Callable[[], str] | None = None) -> None:
    """Pause the pilot until `condition()` holds (worker results arrive asynchronously); on timeout, say what was
    waited for and, with `explain`, what the screen showed instead."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        await pilot.pause(0.05)
    shown = f"; instead: {explain()}" if explain else ""
    notes = [n.message for n in getattr(pilot.app, "_notifications", [])]
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{shown}; notifications: {notes}")


async def open_wizard(pilot):
    """`n` from wherever the app is, and wait for the run wizard; returns it."""
    await pilot.press("n")
    await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "WizardScreen", what="wizard")
    return pilot.app.screen


def finished_pair(scripted):
    """A finished ground-truth run and a finished DaMoC run over the same three candidates (compare, history)."""
    gt = scripted(run_id="20260101-100000-gt00", mode="ground-truth",
                  scores={"alpha-chat": 0.70, "bravo-chat": 0.80, "charlie-chat": 0.50}).complete()
    return gt, scripted().complete()


@pytest.fixture
def scripted(settings):
    from tests.tui.scripted_run import ScriptedRun

    def factory(**kw):
        return ScriptedRun(settings, **kw)
    return factory


def text_of(widget) -> str:
    """The plain text a Static shows (markup, rich Text or any rich renderable such as a Table or Group)."""
    from rich.console import Console

    content = widget.content
    if isinstance(content, str):
        from rich.text import Text

        return Text.from_markup(content).plain
    con = Console(width=200, record=True, file=open("/dev/null", "w"), color_system=None)
    con.print(content)
    return con.export_text()
