"""Issue 17, broken items 1-4: one follower per run and only while a view shows it (the app keeps answering keys
after many run views were opened and closed), predictable navigation (one view per run, `1`/`2` reach their list),
the compare view as a formatted table saved to a file, and columns that never cut a number."""
from __future__ import annotations

import os
import threading

from rich.text import Text

from damoc.events import StageProgress
from damoc.facade import RunDir

from damoc_tui.screens.help import HelpScreen
from damoc_tui.screens.history import HistoryScreen
from damoc_tui.screens.registry import RegistryScreen
from damoc_tui.screens.run import RunScreen, fmt_gap
from damoc_tui.widgets.synced_table import SyncedTable
from tests.tui.conftest import finished_pair, text_of, wait_for


def _stack(app) -> list[str]:
    return [type(s).__name__ for s in app.screen_stack]


async def test_many_run_views_one_follower_each_and_the_app_still_answers(make_app, scripted):
    live = scripted(run_id="20260101-120000-live")
    live.start(alive_pid=os.getpid())
    live.data_stages()
    done = scripted(run_id="20260101-110000-done").complete()
    app = make_app()
    threads_before = threading.active_count()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded, what="registry")
        # the sequence, many times over: a 2 a 1 a ..., plus enter on the Runs list
        for i in range(8):
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == live.run_id,
                           what=f"run view {i}")
            await wait_for(pilot, lambda: app.followers.active() == {live.run_id: 1}, what="one follower")
            await pilot.press("a")                   # `a` on the live run's own view: no second copy
            await pilot.pause()
            assert _stack(app).count("RunScreen") == 1 and len(app.screen_stack) == 2, _stack(app)
            await pilot.press("2" if i % 2 == 0 else "1")  # the number keys reach the list, not a run view
            want = HistoryScreen if i % 2 == 0 else RegistryScreen
            await wait_for(pilot, lambda: isinstance(app.screen, want), what=f"list screen {i}")
            assert len(app.screen_stack) == 1
            # nothing shows a run now: its follower stopped
            await wait_for(pilot, lambda: app.followers.active() == {}, what="follower stopped")
            if isinstance(app.screen, HistoryScreen):
                await wait_for(pilot, lambda: done.run_id in app.screen.summaries, what="runs listed")
                table = app.screen.query_one("#runs", SyncedTable)
                table.move_cursor(row=table.row_keys.index(done.run_id))
                await pilot.press("enter")
                await wait_for(pilot, lambda: isinstance(app.screen, RunScreen)
                               and app.screen.run_id == done.run_id, what="finished run's view")
                await wait_for(pilot, lambda: app.screen.query_one("#board", SyncedTable).value("bravo-chat", "rank")
                               == "1", what="finished run's board")
                await pilot.press("a")                  # another run: its view replaces this one
                await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run_id == live.run_id,
                               what="live run replaces the finished one")
                assert _stack(app).count("RunScreen") == 1
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="back to the list")
        await wait_for(pilot, lambda: app.followers.active() == {} and not any(
            t.is_alive() for t in app.followers.threads()), what="no follower thread left")
        # follower threads ended: no thread piles up however many views were opened
        await wait_for(pilot, lambda: threading.active_count() <= threads_before + 4,
                       what=f"threads back near {threads_before}",
                       explain=lambda: str([t.name for t in threading.enumerate()]))
        # the app answers keys: help opens, the registry comes back, a run view still loads
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and len(app.screen_stack) == 1,
                       what="registry after help")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen)
                       and set(app.screen.query_one("#board", SyncedTable).row_keys) == set(live.candidates),
                       what="a run view that loads")
        await pilot.press("ctrl+q")
    assert not app.is_running


async def test_hidden_view_stops_following_and_continues_where_it_was(make_app, scripted):
    from damoc.events import RunStarted
    from damoc_tui.messages import RunEvents

    run = scripted()
    run.start(alive_pid=os.getpid())
    app = make_app()
    seen: list = []
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.alive, what="attach")
        view = app.screen
        await pilot.press("question_mark")          # help over the run view: the view is hidden
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await wait_for(pilot, lambda: app.followers.active() == {}, what="hidden view unsubscribed")
        run.data_stages()
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is view and app.followers.active() == {run.run_id: 1},
                       what="view shown again, following")
        await wait_for(pilot, lambda: "compress ok" in text_of(view.query_one("#run-data")), what="caught up")
        assert view.state.data.stages["prepare"].status == "ok"
        # nothing was read twice (the view kept its read position while hidden): one run_started, as written
        started = [e for m in seen if isinstance(m, RunEvents) for e in m.events if isinstance(e, RunStarted)]
        assert len(started) == 1


async def test_compare_is_a_formatted_table_saved_to_a_file(make_app, scripted):
    gt, dm = finished_pair(scripted)
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and len(app.screen.summaries) == 2,
                       what="runs listed")
        await pilot.press("c")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChoiceScreen", what="compare with")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextScreen", what="comparison")
        text = app.screen.text
        assert "seconds_a" not in text and "ranking_a" not in text and "{" not in text
        lines = text.splitlines()
        assert "A " + dm.run_id in lines[0] and "B " + gt.run_id in lines[0]
        assert lines[1].split()[:3] == ["1", "bravo-chat", "bravo-chat"]     # the rankings side by side
        assert "top-1           agrees" in text and "Kendall tau     1.000" in text and "Spearman rho    1.000" in text
        assert "B/A = " in text and "x" in text
        await pilot.press("s")
        path = dm.rd.path / "exports" / f"compare-{gt.run_id}.txt"
        await wait_for(pilot, path.exists, what="saved comparison")
        assert path.read_text() == text
        assert any("saved" in n.message for n in app._notifications)


async def test_numbers_never_cut_and_columns_use_the_width(make_app, scripted):
    run = scripted(steps=120)
    run.start(alive_pid=os.getpid())
    run.data_stages()
    run.finetune_steps("alpha-chat", 56)
    # the writer rate-limits progress (step 56 may have been dropped): write it through a writer of its own
    RunDir(run.rd.path).emit(StageProgress(run_id=run.run_id, cell="alpha-chat/finetune-full-s0/finetune",
                                           stage="finetune", candidate="alpha-chat", done=56, total=120))
    widths: dict[tuple[int, int], dict[str, int | None]] = {}
    for size in ((80, 24), (120, 40)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.alive, what="attach")
            board = app.screen.query_one("#board", SyncedTable)
            await wait_for(pilot, lambda: board.value("alpha-chat", "stage") == "finetune 56/120", what="progress",
                           explain=lambda: str(board.value("alpha-chat", "stage")))
            await pilot.pause(0.3)
            assert board.column_width("stage") >= len("finetune 56/120")
            widths[size] = {k: board.column_width(k) for k in ("name", "stage", "gap", "loss")}
            await pilot.press("1")
            await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded,
                           what="registry")
            reg = app.screen.query_one("#reg-table", SyncedTable)
            await pilot.pause(0.3)
            assert reg.column_width("flags") >= len("flags")       # the header reads `flags`, not `fl`
            widths[size]["reg-name"] = reg.column_width("name")
            total = sum((reg.column_width(k) or 0) + 2 for k in reg.shown_columns)
            assert total <= reg.size.width                           # nothing overflows the table
    assert widths[(80, 24)]["loss"] is None and widths[(120, 40)]["loss"] == 10   # dropped at 80, shown at 120
    assert widths[(120, 40)]["name"] > widths[(80, 24)]["name"]      # the name takes the width there is
    assert widths[(120, 40)]["reg-name"] >= widths[(80, 24)]["reg-name"]
    assert fmt_gap(0.667, False, 2) == "-0.667" and fmt_gap(0.004, True, 2) == "≈-0.004"


def test_flex_column_abbreviates_with_an_ellipsis():
    t = SyncedTable([("name", "name", 4), ("n", "n", 1)], row_key="name", flex="name")
    shown = t._shown_value("name", "Ministral-8B-Instruct-2410")
    assert isinstance(shown, Text) and shown.overflow == "ellipsis" and shown.no_wrap
    assert t._shown_value("n", "120") == "120"
