"""Snapshot tests of the main screens at 80x24 and 120x40, in the default theme and the 16-colour theme.

The SVGs live in tests/tui/__snapshots__/; after an intended change of the UI, look at the new pictures
(`pytest tests/tui/test_snapshots.py --snapshot-report`), then accept them with `--snapshot-update`.
Data is fixed (catalog only, empty HF cache, scripted runs with a fixed clock) so the pictures are the same on every
machine.
"""
from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.tui.conftest import finished_pair, open_wizard, wait_for

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(autouse=True)
def fixed_registry(settings, tmp_path, monkeypatch):
    """A registry of our own instead of the built-in catalog (whose facts change as it is curated): hub entries
    only, so no machine-specific folder appears in a picture."""
    from damoc.registry import Candidate, ModelFacts, ModelRef, RegistryStore

    empty = tmp_path / "no-catalog"
    empty.mkdir()
    monkeypatch.setattr("damoc.registry.catalog.catalog_dir", lambda: empty)
    f = lambda arch, params, layers, size, **kw: ModelFacts(architecture=arch, parameters=params,  # noqa: E731
                                                             layers=layers, size_bytes=size, dtype="bfloat16", **kw)
    RegistryStore(settings).add_many([
        Candidate("llama-3.1-8b", ModelRef("meta-llama/Llama-3.1-8B-Instruct"), ModelRef("meta-llama/Llama-3.1-8B"),
                  family="llama", chat_facts=f("llama", 8_030_000_000, 32, 16_060_000_000, gated=True),
                  base_facts=f("llama", 8_030_000_000, 32, 16_060_000_000, gated=True), paper=True),
        Candidate("ministral-8b", ModelRef("mistralai/Ministral-8B-Instruct-2410"), None, family="mistral",
                  no_base_reason="no Base model released", paper=True,
                  chat_facts=f("mistral", 8_020_000_000, 36, 16_040_000_000, gated=True)),
        Candidate("glm-4-9b", ModelRef("THUDM/glm-4-9b-chat"), ModelRef("THUDM/glm-4-9b"), family="glm",
                  chat_facts=f("chatglm", 9_400_000_000, 40, 18_800_000_000, trust_remote_code=True),
                  base_facts=f("chatglm", 9_400_000_000, 40, 18_800_000_000, trust_remote_code=True), paper=True),
        Candidate("qwen2.5-0.5b", ModelRef("Qwen/Qwen2.5-0.5B-Instruct"), ModelRef("Qwen/Qwen2.5-0.5B"),
                  family="qwen", chat_facts=f("qwen2", 494_000_000, 24, 988_000_000),
                  base_facts=f("qwen2", 494_000_000, 24, 988_000_000)),
    ])
THEMES = ["damoc-dark", "damoc-ansi"]


async def _steady(pilot) -> None:
    for inp in pilot.app.screen.query(Input):      # a blinking cursor would make pictures differ
        inp.cursor_blink = False
    await pilot.pause(0.1)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
def test_registry(snap_compare, make_app, theme, size):
    async def run_before(pilot):
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="registry")
        await _steady(pilot)
    assert snap_compare(make_app(theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
def test_run_view(snap_compare, make_app, scripted, theme, size):
    scripted().complete()

    async def run_before(pilot):
        await pilot.press("a")
        await wait_for(pilot, lambda: type(pilot.app.screen).__name__ == "RunScreen"
                       and pilot.app.screen.query_one("#board").value("bravo-chat", "rank") == "1", what="board")
        await _steady(pilot)
    assert snap_compare(make_app(theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
def test_runs_history(snap_compare, make_app, scripted, theme, size):
    finished_pair(scripted)

    async def run_before(pilot):
        await pilot.press("2")
        await wait_for(pilot, lambda: "compare" in getattr(pilot.app.screen, "summaries", {}).get(
            "20260101-120000-abcd", {}), what="runs and comparison")
        await _steady(pilot)
    assert snap_compare(make_app(theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
def test_wizard_dataset_step(snap_compare, make_app, theme, size):
    async def run_before(pilot):
        (await open_wizard(pilot)).go_to("data")
        await _steady(pilot)
    assert snap_compare(make_app(theme), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", THEMES)
def test_help(snap_compare, make_app, theme):
    async def run_before(pilot):
        await pilot.press("question_mark")
        await pilot.pause(0.2)
    assert snap_compare(make_app(theme), terminal_size=(80, 24), run_before=run_before)
