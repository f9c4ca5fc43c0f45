"""The whole app flow on the test zoo with real runs (driver and worker subprocesses started by the library):
walk the wizard, save the config, launch, watch the leaderboard fill, cancel, resume, quit the app while the run goes
on, reopen the app and reattach. Tiny step counts: this checks the app's part, not ranking quality."""
from __future__ import annotations


import pytest

from damoc_tui.screens.run import RunScreen
from damoc_tui.screens.wizard import WizardScreen
from damoc_tui.widgets.synced_table import SyncedTable
from tests.tui.conftest import text_of, wait_for

pytestmark = pytest.mark.slow

# The shared data stages (filter, compress) are switched off to keep this test short and about the app (their modules
# have their own tests); each candidate goes through pruning (when it has a Base), proxy fine-tuning and evaluation.
FAST = ("filter.enabled=false compress.enabled=false finetune.full.lr=1e-3 finetune.full.epochs=1 finetune.full.effective_batch=8 finetune.full.micro_batch=8 "
        "finetune.full.max_length=64 finetune.proxy_min_steps=3 dataset.max_train=64 dataset.max_test=12 "
        "prune.calib_samples=8 evaluate.max_new_tokens=6")


def _run_log(screen) -> str:
    """The last events and the driver's log, for a failure message."""
    rd = screen.rd
    events = rd.events_path.read_text().splitlines()[-5:] if rd.events_path.exists() else []
    log = rd.path / "logs" / "driver.log"
    return "\n".join(events) + "\n" + (log.read_text()[-2000:] if log.exists() else "(no driver log)")


@pytest.fixture
def zoo_home(settings, test_zoo, test_tasks):
    from damoc.registry import register_zoo

    register_zoo(settings, test_zoo)           # what `damoc zoo build` does
    with_base = next(c for c in test_zoo if c.base_path)
    no_base = next(c for c in test_zoo if not c.base_path)
    task = next(t for t in test_tasks if t.metric == "squad_f1")
    return with_base, no_base, task


async def test_wizard_launch_watch_cancel_resume_reopen(make_app, settings, zoo_home, tmp_path):
    from damoc.pipeline import api
    from damoc.pipeline.config import load_config

    with_base, no_base, task = zoo_home
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        # registry: pick the two candidates (local ones come first), then open the wizard
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), what="registry")
        table = app.screen.query_one("#reg-table", SyncedTable)
        for name in (with_base.name, no_base.name):
            table.move_cursor(row=table.row_keys.index(name))
            await pilot.press("space")
        assert app.selected_candidates == [with_base.name, no_base.name]
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, WizardScreen), what="wizard")
        wiz = app.screen
        await wait_for(pilot, lambda: sorted(wiz.selected()) == sorted([with_base.name, no_base.name]), what="preselected")
        await pilot.press("pagedown")

        # dataset: the inspect summary appears; a missing file is refused
        wiz.query_one("#w-train").value = str(tmp_path / "missing.jsonl")
        await pilot.press("pagedown")
        assert "no such file" in text_of(wiz.query_one("#wiz-error"))
        wiz.query_one("#w-train").value = task.train_path
        wiz.query_one("#w-test").value = task.test_path
        wiz.inspect(task.train_path)
        await wait_for(pilot, lambda: "samples from" in text_of(wiz.query_one("#w-data-report")), what="inspect")
        assert "no problems found" in text_of(wiz.query_one("#w-data-report"))
        await pilot.press("pagedown")

        # filter: GraphCut by default; 5% draws the paper's warning
        assert wiz.filter_method() == "graphcut"
        ratio = wiz.query_one("#w-filter-ratio")
        ratio.value = "0.05"
        await pilot.pause()
        assert "warning" in text_of(wiz.query_one("#w-ratio-note"))
        ratio.value = "0.25"
        wiz.query_one("#w-filter-scorer").value = with_base.name      # the LM-based methods' scorer, by registry name
        await pilot.press("pagedown", "pagedown")           # filter -> compress -> prune

        # pruning: the candidate without a Base is listed as skipped, with the registry's reason
        skips = text_of(wiz.query_one("#w-prune-skips"))
        assert f"{with_base.name}: pruned + sparse merge" in skips
        assert f"{no_base.name}: pruning skipped: no Base" in skips
        await pilot.press("pagedown")

        # fine-tuning: tiny step counts through the `--set` style field, then the pre-flight sheet
        wiz.query_one("#w-extra").value = FAST
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: wiz.plan is not None, timeout=60, what="plan",
                       explain=lambda: text_of(wiz.query_one("#w-preflight")))
        sheet = text_of(wiz.query_one("#w-preflight"))
        assert "pre-flight" in sheet and f"skip {no_base.name}/prune" in sheet and "skip _data/filter" in sheet

        # the same config saved as a file reads back equal (it can be run headless: damoc run --config FILE)
        await pilot.press("ctrl+s")
        await pilot.pause()
        saved = tmp_path / "wizard.yaml"
        app.screen.query_one("#f-path").value = str(saved)
        await pilot.press("ctrl+s")
        await wait_for(pilot, saved.exists, what="saved config")
        assert load_config(saved) == wiz.config
        assert wiz.config.filter.scorer == with_base.name

        # launch: the live view opens on the new run
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), timeout=30, what="run view")
        screen = app.screen
        run_id = screen.run_id
        await wait_for(pilot, lambda: screen.alive, timeout=30, what="driver alive")
        board = screen.query_one("#board", SyncedTable)
        await wait_for(pilot, lambda: set(board.row_keys) == {with_base.name, no_base.name}, what="rows")

        # cancel as soon as the run is at work on something (a shared data stage or a candidate)
        def at_work() -> bool:
            if screen.state.status == "failed":
                raise AssertionError(f"the run failed:\n{_run_log(screen)}")
            return any(st.status == "running" for c in screen.state.candidates.values() for st in c.stages.values())
        await wait_for(pilot, at_work, timeout=180, what="a stage at work", explain=lambda: _run_log(screen))
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: not screen.alive, timeout=120, what="cancelled", explain=lambda: _run_log(screen))
        await wait_for(pilot, lambda: screen.state.status == "cancelled", timeout=10, what="cancelled status")
        assert api.open_run(settings, run_id).status() == "cancelled"

        # resume from the live view; the same screen keeps following the same events file. Wait on the events
        # themselves (the resumed driver's run_started, then its liveness), not on a clock: under load (4 busy
        # processes on 2 cores) a driver's interpreter start-up alone took longer than the 30 s this used to allow.
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.state.resumes >= 1, timeout=300, what="resumed (run_started of the "
                       "resumed driver)", explain=lambda: _run_log(screen))
        await wait_for(pilot, lambda: screen.alive or screen.state.status != "running", timeout=60,
                       what="resumed driver seen alive", explain=lambda: _run_log(screen))
        # quit the app while the run goes on: the run is a separate process and keeps going
        await app.action_quit()
    rd = api.open_run(settings, run_id)
    assert rd.is_alive(), "quitting the app must leave the run going"

    # reopen: the app says the run is still going and `a` attaches to it; the leaderboard fills to the end
    app2 = make_app()
    async with app2.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: run_id in app2.live_runs, what="live run found")
        assert any("still going" in n.message for n in app2._notifications)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app2.screen, RunScreen) and app2.screen.run_id == run_id,
                       what="reattached")
        screen = app2.screen
        await wait_for(pilot, lambda: screen.state.status == "finished" and not screen.alive, timeout=600,
                       what="run finished", explain=lambda: _run_log(screen))
        board = screen.query_one("#board", SyncedTable)
        lb = api.leaderboard(rd)
        await wait_for(pilot, lambda: board.value(lb.winner, "rank") == "1", what="final ranking")
        for row in lb.rows:
            assert board.value(row.candidate, "score") == f"{row.score:.4f}"
        assert str(board.value(no_base.name, "prune")) == "skipped"
    assert rd.status() == "finished"
