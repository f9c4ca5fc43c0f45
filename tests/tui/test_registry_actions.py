"""Registry actions that touch the Hugging Face cache and the hub, driven from the app: scan the cache, pull with
progress (from a loopback fake hub), and the offline message. The fakes are the registry tests' own
(tests/test_registry_fakes.py): real safetensors headers, the real cache layout, a real HTTP server."""
from __future__ import annotations

import pytest

from damoc_tui.messages import JobProgress
from damoc_tui.screens.registry import RegistryScreen
from damoc_tui.widgets.synced_table import SyncedTable
from tests.test_registry_fakes import FakeHub, model_files, write_cached
from tests.tui.conftest import wait_for


def _table(app) -> SyncedTable:
    return app.screen.query_one("#reg-table", SyncedTable)


async def _loaded(pilot) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RegistryScreen) and pilot.app.screen.loaded,
                   what="the registry list")


async def _goto(pilot, name: str) -> None:
    table = _table(pilot.app)
    table.move_cursor(row=table.row_keys.index(name))
    await pilot.pause()


async def test_scan_registers_cached_pairs(make_app, empty_hf_cache):
    write_cached(empty_hf_cache, "acme/Tiny-7B-Instruct", chat=True, seed=1)
    write_cached(empty_hf_cache, "acme/Tiny-7B", seed=2)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot)
        assert "Tiny-7B-Instruct" not in _table(app).row_keys
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("ctrl+s")                     # no extra folders: the HF cache only
        await wait_for(pilot, lambda: "Tiny-7B-Instruct" in _table(app).row_keys, what="scanned pair")
        assert any("1 added" in n.message for n in app._notifications)
        assert str(_table(app).value("Tiny-7B-Instruct", "merge")) == "yes"
        assert str(_table(app).value("Tiny-7B-Instruct", "where")).startswith("cache")


async def test_pull_offline_says_so(make_app, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _loaded(pilot)
        await _goto(pilot, "Qwen2.5-0.5B")
        await pilot.press("p")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: any("offline" in n.message for n in app._notifications), what="offline error")


@pytest.fixture
def online(empty_hf_cache, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)   # frozen at import by the session's HF_HUB_OFFLINE=1
    return empty_hf_cache


async def test_pull_shows_progress_and_then_the_pair_is_mergeable(make_app, online, monkeypatch):
    chat = model_files(arch="qwen2", chat=True, seed=1)
    base = model_files(arch="qwen2", seed=2)
    seen: list = []
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct": chat, "Qwen/Qwen2.5-0.5B": base}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app()
        async with app.run_test(size=(120, 40), message_hook=seen.append) as pilot:
            await _loaded(pilot)
            assert str(_table(app).value("Qwen2.5-0.5B", "merge")) == "download"
            await _goto(pilot, "Qwen2.5-0.5B")
            await pilot.press("p")
            await pilot.pause()
            await pilot.press("y")
            await wait_for(pilot, lambda: str(_table(app).value("Qwen2.5-0.5B", "merge")) == "yes", timeout=30,
                           what="pulled pair")
            assert str(_table(app).value("Qwen2.5-0.5B", "where")).startswith("cache")
            assert any("pulled Qwen2.5-0.5B" in n.message for n in app._notifications)
    progress = [m for m in seen if isinstance(m, JobProgress) and m.job == "pull"]
    assert progress and progress[-1].total and progress[-1].done == progress[-1].total
