"""P(best) in the app (issue 19 item 2): the run view's win% column and detail pane, and the Runs screen's preview,
from the pipeline's leaderboard rows (a paired bootstrap over the per-item scores the cells wrote)."""
from __future__ import annotations

from damoc_tui.screens.history import HistoryScreen
from damoc_tui.screens.run import RunScreen
from damoc_tui.widgets.synced_table import SyncedTable
from tests.tui.conftest import text_of, wait_for


async def test_run_view_and_runs_screen_show_p_best(make_app, scripted, settings):
    from damoc.facade import fmt_percent, leaderboard_rows, open_run

    run = scripted(per_item=True).complete()
    rows = {r["name"]: r for r in leaderboard_rows(open_run(settings, run.run_id))}
    assert all(r["p_best"] is not None for r in rows.values())
    assert rows["bravo-chat"]["p_best"] > rows["alpha-chat"]["p_best"]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:          # 80 columns: win% is kept, never dropped
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.summaries, what="runs")
        await wait_for(pilot, lambda: "win%" in text_of(app.screen.query_one("#preview")), what="preview win%")
        assert fmt_percent(rows["bravo-chat"]["p_best"]) in text_of(app.screen.query_one("#preview"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        board = app.screen.query_one("#board", SyncedTable)
        await wait_for(pilot, lambda: board.value("bravo-chat", "win") != "" and board.value("bravo-chat", "win")
                       is not None, what="win% cells")
        assert "win" in board.shown_columns
        for name, r in rows.items():
            assert board.value(name, "win") == fmt_percent(r["p_best"])
        board.move_cursor(row=board.row_keys.index("bravo-chat"))
        await pilot.pause(0.2)
        assert f"P(best) {fmt_percent(rows['bravo-chat']['p_best'])}%" in text_of(app.screen.query_one("#cand-summary"))
