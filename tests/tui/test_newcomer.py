"""Issue 17 items 7, 11, 12: the registry notices a change made by another process (a zoo built or a model added
from the CLI); with NO_COLOR the chosen filter method and the focused widget carry a mark that is not a colour; the
wizard drops a stale dataset error once the path is fixed, and starts from a saved config or the last run's."""
from __future__ import annotations

import json

from textual.widgets import Input, OptionList

from damoc_tui.screens.registry import RegistryScreen
from tests.helpers.fakes import write_model
from tests.tui.conftest import open_wizard, text_of, wait_for


async def test_registry_follows_changes_from_another_process(make_app, settings, tmp_path):
    from damoc.registry import add_candidate

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded, what="registry")
        table = app.screen.query_one("#reg-table")
        assert "outsider" not in table.row_keys
        # what `damoc registry add` does in a shell next to the app: the registry file changes under it
        add_candidate(settings, str(write_model(tmp_path / "outsider" / "chat", chat=True)), name="outsider")
        await wait_for(pilot, lambda: "outsider" in table.row_keys, timeout=8, what="the new entry listed")
        # every list moves with Home/End and j/k
        rows = table.row_keys
        await pilot.press("end")
        assert table.highlighted_key == rows[-1]
        await pilot.press("home")
        assert table.highlighted_key == rows[0]
        await pilot.press("j", "j", "k")
        assert table.highlighted_key == rows[1]
        shown = [b.binding for b in app.screen.active_bindings.values() if b.binding.show]
        assert any(b.id == "registry.refresh" for b in shown)             # `f` is in the footer too


async def test_no_color_marks_focus_and_the_chosen_method(make_app, settings, monkeypatch):
    from damoc_tui.app import DamocApp

    monkeypatch.setenv("NO_COLOR", "1")
    app = DamocApp(settings)                     # no theme asked for: NO_COLOR picks the 16-colour one
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.has_class("-no-color") and app.theme == "damoc-ansi"
        wiz = await open_wizard(pilot)
        wiz.go_to("data")
        await pilot.pause()
        focused = app.focused
        assert isinstance(focused, Input) and focused.styles.text_style.underline   # underlined, not a colour
        wiz.go_to("filter")
        await pilot.pause()
        ol = wiz.query_one("#w-filter-method", OptionList)
        assert app.focused is ol
        style = ol.get_component_rich_style("option-list--option-highlighted")
        assert style.underline and style.bold
        assert "method: graphcut" in text_of(wiz.query_one("#w-filter-chosen"))     # the choice in words
        await pilot.press("j")                                  # j/k move this list too
        await pilot.pause()
        assert wiz.filter_step.method() != "graphcut"
        assert f"method: {wiz.filter_step.method()}" in text_of(wiz.query_one("#w-filter-chosen"))


async def test_wizard_clears_a_stale_dataset_error_and_loads_configs(make_app, settings, scripted, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "outp\n')
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(12)))
    from damoc.registry import add_candidate

    run = scripted(run_id="20260101-090000-last").complete()     # a past run to start from, over local models
    for name in run.candidates[:2]:
        add_candidate(settings, str(write_model(tmp_path / name / "chat", chat=True)), name=name)
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        wiz = await open_wizard(pilot)
        wiz.go_to("data")
        train = wiz.query_one("#w-train", Input)
        train.value = str(bad)
        wiz.data_step.inspect(str(bad))
        await wait_for(pilot, lambda: wiz.data_step.report and wiz.data_step.report.get("_for") == str(bad),
                       what="bad file read")
        await pilot.press("pagedown")
        await pilot.pause()
        assert "the dataset has errors" in text_of(wiz.query_one("#wiz-error"))
        train.value = str(good)                                   # the fix: another path
        await pilot.press("enter")
        await wait_for(pilot, lambda: "12 samples" in text_of(wiz.query_one("#w-data-report")), what="good file")
        assert text_of(wiz.query_one("#wiz-error")) == ""         # the old error went with the old path

        # start from the last run's config: its candidates, dataset and label come back
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChoiceScreen", what="load choices")
        first = app.screen.query_one("#choices", OptionList).get_option_at_index(0)
        assert first.id == f"run:{run.run_id}" and "last run" in str(first.prompt)
        await pilot.press("enter")                                # the first choice: the last run
        await wait_for(pilot, lambda: app.screen is wiz and wiz.cands_step.chosen == run.candidates[:2],
                       what="loaded")
        assert any("left out: charlie-chat" in n.message for n in app._notifications)     # not on this machine
        assert train.value == "/data/pubmedqa/train.jsonl"
        assert wiz.query_one("#w-extra", Input).value == "leaderboard.tolerance=0.01"   # no field of its own

        # a saved file: the wizard's own save, read back
        path = settings.home / "configs" / "mine.yaml"
        from damoc import facade

        facade.save_config(facade.validate_config({"candidates": ["x"], "dataset": {"train": str(good)},
                                                   "filter": {"ratio": 0.3, "method": "random"}}, "test"), path)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ChoiceScreen", what="load choices")
        ol = app.screen.query_one("#choices", OptionList)
        ol.highlighted = next(i for i in range(ol.option_count) if ol.get_option_at_index(i).id == f"file:{path}")
        await pilot.press("enter")
        await wait_for(pilot, lambda: train.value == str(good), what="file loaded")
        assert wiz.query_one("#w-filter-ratio", Input).value == "0.3" and wiz.filter_step.method() == "random"


async def test_wizard_offers_the_executor_and_the_ray_address(make_app, settings):
    from textual.widgets import Select

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        wiz = await open_wizard(pilot)
        wiz.go_to("train")
        await pilot.pause()
        assert wiz.config_data()["executor"]["kind"] == "local"
        assert wiz.query_one("#w-ray-address", Input).disabled             # local: no address to give
        wiz.query_one("#w-executor", Select).value = "ray"
        await pilot.pause()
        address = wiz.query_one("#w-ray-address", Input)
        assert not address.disabled
        address.value = "ray://head:10001"
        cfg = wiz.build_config()
        assert (cfg.executor.kind, cfg.executor.address) == ("ray", "ray://head:10001")
        assert "Ray" in text_of(wiz.query_one("#w-executor-note"))
