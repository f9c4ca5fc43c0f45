"""Pilot tests of the registry screen: capability flags and their reasons, search/filter/sort, add and remove."""
from __future__ import annotations


from damoc_tui.screens.registry import RegistryScreen
from damoc_tui.widgets.synced_table import SyncedTable
from tests.tui.conftest import text_of, wait_for


def _table(app) -> SyncedTable:
    return app.screen.query_one("#reg-table", SyncedTable)


async def _loaded(pilot) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RegistryScreen) and pilot.app.screen.loaded,
                   what="the registry list")


async def test_catalog_flags_and_reasons(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _loaded(pilot)
        table = _table(app)
        keys = table.row_keys
        assert "Ministral-8B-Instruct-2410" in keys and "Qwen2.5-7B" in keys
        # the paper's no-Base models: merge impossible, W_pre none
        assert str(table.value("Ministral-8B-Instruct-2410", "merge")) == "no Base"
        assert str(table.value("Ministral-8B-Instruct-2410", "wpre")) == "none"
        # a pair with a Base that is not downloaded: merge would need a download, W_pre lives on the hub
        assert str(table.value("Qwen2.5-7B", "merge")) == "download"
        assert str(table.value("Qwen2.5-7B", "wpre")) == "hub"
        assert str(table.value("Qwen2.5-7B", "where")).startswith("hub ≈")
        # the detail pane gives the registry's reason for the highlighted row
        table.move_cursor(row=keys.index("Ministral-8B-Instruct-2410"))
        await pilot.pause()
        detail = text_of(app.screen.query_one("#reg-detail"))
        assert "pruning skipped: no Base (W_pre)" in detail


async def test_search_filter_sort(make_app):
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot)
        total = len(_table(app).row_keys)
        await pilot.press("slash")
        await pilot.press(*"qwen")
        await pilot.pause()
        keys = _table(app).row_keys
        assert keys and all("qwen" in k.lower() for k in keys) and len(keys) < total
        await pilot.press("escape")          # back to the table; the search stays
        await pilot.press("m")               # only mergeable: nothing is local here, so nothing can be merged
        await pilot.pause()
        assert _table(app).row_keys == []
        assert "no candidate matches" in text_of(app.screen.query_one("#reg-detail"))
        await pilot.press("m")
        app.screen.query_one("#reg-search").value = ""
        await pilot.pause()
        await pilot.press("o")               # sort by name
        await pilot.pause()
        keys = _table(app).row_keys
        assert keys == sorted(keys, key=str.lower) and len(keys) == total


async def test_add_remove_and_select_a_zoo_candidate(make_app, test_zoo, settings):
    from damoc.registry import RegistryStore

    pair = next(c for c in test_zoo if c.base_path)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot)
        await pilot.press("plus")
        await pilot.pause()
        form = app.screen
        form.query_one("#f-chat").value = str(pair.chat_path)
        form.query_one("#f-base").value = str(pair.base_path)
        form.query_one("#f-name").value = "my-pair"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "my-pair" in _table(app).row_keys, what="the added row")
        table = _table(app)
        # computed from the files: a compatible Base is there, so sparse merging is supported
        assert str(table.value("my-pair", "merge")) == "yes"
        assert str(table.value("my-pair", "wpre")) == "yes"
        assert table.row_keys[0] == "my-pair"                # local first
        assert RegistryStore(settings).get("my-pair").merge_supported
        # select it for a run, then the wizard starts with it ticked
        table.move_cursor(row=0)
        await pilot.press("space")
        await pilot.pause()
        assert app.selected_candidates == ["my-pair"]
        # remove it (confirm with y)
        await pilot.press("delete")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: "my-pair" not in _table(app).row_keys, what="the row to go")
        assert "my-pair" not in RegistryStore(settings).names()
        assert app.selected_candidates == []


async def test_add_reports_bad_folder(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _loaded(pilot)
        await pilot.press("plus")
        await pilot.pause()
        app.screen.query_one("#f-chat").value = str(tmp_path)      # a folder without config.json
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("config.json" in n.message for n in app._notifications),
                       what="the error notification")
