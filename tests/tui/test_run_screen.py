"""Pilot tests of the live run view and the Runs screen against a scripted run directory (the files a driver writes;
the pipeline's own leaderboard reads them). Real runs on the test zoo are in test_e2e.py."""
from __future__ import annotations

import json
import os

from damoc_tui.messages import RunProgress
from damoc_tui.screens.history import HistoryScreen
from damoc_tui.screens.run import RunScreen
from damoc_tui.widgets.synced_table import SyncedTable
from tests.tui.conftest import finished_pair, text_of, wait_for


def _board(app) -> SyncedTable:
    return app.screen.query_one("#board", SyncedTable)


async def test_leaderboard_fills_live_cell_by_cell(make_app, scripted):
    run = scripted()
    run.start(alive_pid=os.getpid())          # this process stands in for the driver: the run is "alive"
    run.data_stages()
    seen: list = []
    app = make_app()
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.press("a")                  # attach: the newest live run
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.alive, what="attach")
        screen = app.screen
        await wait_for(pilot, lambda: set(_board(app).row_keys) == set(run.candidates), what="rows")
        assert "data: prepare ok" in text_of(screen.query_one("#run-data"))
        assert "● live" in text_of(screen.query_one("#run-title"))

        run.prune("alpha-chat")
        run.finetune_steps("alpha-chat", 7)
        # the run's event writer rate-limits progress (4/s per cell): the last step written shows
        await wait_for(pilot, lambda: str(_board(app).value("alpha-chat", "stage")).startswith("finetune ")
                       and str(_board(app).value("alpha-chat", "stage")).endswith("/20"), what="fine-tune progress")
        assert _board(app).value("alpha-chat", "loss")          # the loss sparkline has points
        assert str(_board(app).value("alpha-chat", "prune")) == "1/4 merged"      # pruned of before, merged
        rows_before = list(_board(app).row_keys)
        updates_before = _board(app).cell_updates

        # a burst of progress: the UI coalesces it (never one message per event)
        run.finetune_steps("bravo-chat", 20)
        await wait_for(pilot, lambda: str(_board(app).value("bravo-chat", "stage")) == "finetune 20/20",
                       what="burst")
        progress_msgs = [m for m in seen if isinstance(m, RunProgress) and m.event.candidate == "bravo-chat"]
        assert 1 <= len(progress_msgs) < 20

        run.finish_candidate("bravo-chat")
        run.finish_candidate("alpha-chat")
        await wait_for(pilot, lambda: _board(app).value("bravo-chat", "rank") == "1"
                       and _board(app).value("alpha-chat", "rank") == "2", what="ranking")
        board = _board(app)
        assert board.value("bravo-chat", "score") == "0.7400"
        assert board.value("alpha-chat", "gap") == "-0.130"
        # same rows, same table: cells were updated in place, rows moved, nothing was cleared and refilled
        assert sorted(board.row_keys) == sorted(rows_before)
        assert board.cell_updates > updates_before
        assert board.row_keys[:2] == ["bravo-chat", "alpha-chat"]

        # the selected candidate's detail: stages, loss curve and logs
        board.move_cursor(row=0)
        await pilot.pause(0.2)
        assert "bravo-chat" in text_of(screen.query_one("#cand-summary"))
        assert screen.query_one("#cand-loss").data
        assert any("bravo-chat scored 0.74" in str(line.text) for line in screen.query_one("#cand-log").lines)

        run.finish_candidate("charlie-chat")
        run.finish()
        await wait_for(pilot, lambda: not screen.alive and screen.state.status == "finished", what="run end")
        assert "○ not running" in text_of(screen.query_one("#run-title"))
        assert str(_board(app).value("charlie-chat", "prune")) == "skipped"


async def test_runs_screen_lists_compares_exports(make_app, scripted, settings):
    from damoc.pipeline.api import leaderboard, open_run

    gt, dm = finished_pair(scripted)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and len(app.screen.summaries) == 2,
                       what="runs listed")
        screen = app.screen
        table = screen.query_one("#runs", SyncedTable)
        assert table.row_keys[0] == dm.run_id                      # newest first
        s = screen.summaries[dm.run_id]
        assert s["winner"] == "bravo-chat" and s["status"] == "finished"
        await wait_for(pilot, lambda: "compare" in screen.summaries[dm.run_id], what="ground-truth comparison")
        cmp = screen.summaries[dm.run_id]["compare"]
        assert cmp["against"] == gt.run_id and cmp["top1_agree"] is True
        assert abs(cmp["kendall_tau"] - 1.0) < 1e-9                 # same order in both runs
        assert "top-1 agrees" in text_of(screen.query_one("#preview"))

        # export the three formats: the files hold exactly what the pipeline's leaderboard exports
        lb = leaderboard(open_run(settings, dm.run_id))
        for fmt, expected in (("json", lb.to_json()), ("csv", lb.to_csv()), ("md", lb.to_markdown())):
            await pilot.press("e")
            await pilot.pause()
            app.screen.query_one("#choices").highlighted = ["json", "csv", "md", "svg"].index(fmt)
            await pilot.press("enter")
            path = dm.rd.path / "exports" / f"leaderboard.{fmt}"
            await wait_for(pilot, path.exists, what=f"{fmt} export")
            assert path.read_text().strip() == expected.strip()
        assert json.loads((dm.rd.path / "exports" / "leaderboard.json").read_text())["winner"] == "bravo-chat"

        # SVG screenshot of the screen
        await pilot.press("e")
        await pilot.pause()
        app.screen.query_one("#choices").highlighted = 3
        await pilot.press("enter")
        await wait_for(pilot, lambda: list((dm.rd.path / "exports").glob("*.svg")), what="svg")

        # copy the leaderboard: OSC 52 to the terminal and a file next to the run
        await pilot.press("y")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextScreen", what="copy viewer")
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard.startswith("| # | candidate")
        assert (dm.rd.path / "exports" / "leaderboard.md").read_text() == app.clipboard
        await pilot.press("q")

        # hand-off of the winner: LLaMA-Factory and ms-swift configs from the pipeline
        await pilot.press("h")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "TextScreen", what="hand-off")
        text = app.screen.text
        assert "bravo-chat" in text and "swift" in text.lower() and "llamafactory" in text.lower().replace("-", "")
        await pilot.press("q")

        # enter opens the finished run's view, with the final leaderboard
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        await wait_for(pilot, lambda: _board(app).value("bravo-chat", "rank") == "1", what="final board")


async def test_long_backlog_is_folded_off_the_ui_thread(make_app, scripted):
    """Reattaching to a long run: the backlog arrives as one folded snapshot, then the screen follows on."""
    from damoc_tui.messages import RunEvents, RunSnapshot

    run = scripted(steps=1500)           # 1500 loss metrics per candidate: a backlog over the snapshot threshold
    run.complete()
    seen: list = []
    app = make_app()
    async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen)
                       and _board(app).value("bravo-chat", "rank") == "1", what="board from the snapshot")
        assert sum(isinstance(m, RunSnapshot) for m in seen) == 1
        assert not any(isinstance(m, RunEvents) for m in seen)
        assert len(app.screen.state.candidate("bravo-chat").losses) == 400      # bounded (LOSS_KEEP)
        assert app.screen.state.status == "finished"
