"""Issue 17 item 5: on a data dir with nothing runnable, the registry and the wizard say what to do first, and `z`
builds the demo zoo from the app (a thread worker through the facade, with progress) and registers it."""
from __future__ import annotations

import pytest

from damoc_tui.messages import JobProgress
from damoc_tui.job_progress import JobReporter
from damoc_tui.screens.registry import RegistryScreen
from tests.helpers.cache import cache_dir
from tests.tui.conftest import open_wizard, text_of, wait_for


@pytest.fixture
def zoo_settings(settings, monkeypatch, test_zoo):
    """The `test` zoo size, its pool already built in the test cache (the app's build then only registers it)."""
    from damoc.settings import Settings

    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "zoo").symlink_to(cache_dir() / "zoo", target_is_directory=True)
    monkeypatch.setenv("DAMOC_ZOO_SIZE", "test")
    return Settings.load()


async def test_empty_data_dir_gives_a_first_step_and_z_builds_the_zoo(zoo_settings, test_zoo):
    from damoc_tui.app import DamocApp

    app = DamocApp(zoo_settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded, what="registry")
        screen = app.screen
        hint = screen.query_one("#reg-hint")
        assert hint.display and "z builds the demo zoo" in text_of(hint)
        await pilot.press("m")                                   # only mergeable: still the first step, not a void
        await pilot.pause()
        assert "z builds the demo zoo" in text_of(screen.query_one("#reg-detail"))
        await pilot.press("m")
        # the wizard says the same
        await open_wizard(pilot)
        await wait_for(pilot, lambda: "z builds the demo zoo" in text_of(app.screen.query_one("#w-cands-note")),
                       what="wizard hint")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, what="registry again")
        # z: confirm, build through the facade in a worker, then the zoo is registered and the hint goes away
        await pilot.press("z")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ConfirmScreen", what="confirm")
        await pilot.press("y")
        names = [c.name for c in test_zoo]
        await wait_for(pilot, lambda: set(names) <= set(screen.query_one("#reg-table").row_keys), timeout=60,
                       what="zoo registered")
        await wait_for(pilot, lambda: not screen.query_one("#reg-hint").display, what="hint gone")
        assert any("demo zoo ready" in n.message for n in app._notifications)


def test_job_reporter_turns_stage_events_into_progress():
    from damoc.events import StageProgress, StageStarted

    got: list = []
    rep = JobReporter(got.append, "zoo")
    rep.emit(StageStarted(run_id="", cell="", stage="pretrain", candidate="gemmling", total=200))
    rep.emit(StageProgress(run_id="", cell="", stage="pretrain", candidate="gemmling", done=50, total=200))
    assert all(isinstance(m, JobProgress) for m in got)
    assert (got[-1].done, got[-1].total, got[-1].note) == (50, 200, "gemmling pretrain 50/200")
