"""The app shell: themes (packaged, user, 16-colour, NO_COLOR), the keymap file, help, the command palette, quitting,
and that the app process never imports torch or transformers."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from damoc_tui import themes
from damoc_tui.screens.help import HelpScreen
from damoc_tui.screens.registry import RegistryScreen
from tests.tui.conftest import text_of, wait_for


def test_packaged_themes_load(settings):
    loaded, problems = themes.load_themes(settings)
    names = {t.name for t in loaded}
    assert {"damoc-dark", "damoc-light", "damoc-ansi"} <= names and problems == []
    ansi = next(t for t in loaded if t.name == "damoc-ansi")
    assert ansi.ansi and ansi.primary.startswith("ansi_")
    assert themes.packaged_themes_dir().name == "themes"


def test_user_theme_and_broken_file(settings):
    settings.themes_dir.mkdir(parents=True)
    (settings.themes_dir / "mine.toml").write_text('name = "mine"\nprimary = "#ff0000"\ndark = false\n')
    (settings.themes_dir / "bad.toml").write_text('name = "bad"\nprimary = "not-a-colour"\n')
    (settings.themes_dir / "typo.yaml").write_text("name: typo\nprimry: '#00ff00'\n")
    loaded, problems = themes.load_themes(settings)
    assert "mine" in {t.name for t in loaded}
    bad = {p.path.name: p.message for p in problems}
    assert "not a colour" in bad["bad.toml"]
    assert "unknown field(s) primry" in bad["typo.yaml"]


@pytest.mark.parametrize("env,expected", [
    ({"TERM": "xterm-256color"}, "damoc-dark"),
    ({"TERM": "xterm"}, "damoc-ansi"),                        # 16 colours: the terminal's own palette
    ({"TERM": "linux"}, "damoc-ansi"),
    ({"TERM": "xterm", "COLORTERM": "truecolor"}, "damoc-dark"),
    ({"TERM": "xterm-256color", "NO_COLOR": "1"}, "damoc-ansi"),
])
def test_theme_choice(settings, env, expected):
    available = {"damoc-dark", "damoc-light", "damoc-ansi"}
    assert themes.choose_theme(settings, None, available, env) == expected
    assert themes.choose_theme(settings, "damoc-light", available, env) == "damoc-light"   # --theme wins


async def test_theme_flag_no_color_and_cycle(settings, monkeypatch):
    from damoc_tui.app import DamocApp

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    app = DamocApp(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == "damoc-ansi" and app.no_color
        # textual's NoColor filter (terminal default colours), not Monochrome (black on black with an ANSI theme)
        assert [type(f).__name__ for f in app._filters if "Color" in type(f).__name__ or
                type(f).__name__ == "Monochrome"] == ["NoColor"]
        await pilot.press("f2")
        assert app.theme.startswith("damoc-") and app.theme != "damoc-ansi"
    app = DamocApp(settings, theme="no-such-theme")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.theme == "damoc-dark"
        assert any("unknown theme 'no-such-theme'" in n.message for n in app._notifications)


async def test_keymap_file_remaps_and_help_shows_it(settings):
    from damoc_tui.app import DamocApp

    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "keymap.toml").write_text('"app.help" = "f9"\n"app.quit" = "ctrl+x"\n')
    app = DamocApp(settings)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")              # no longer bound
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        keys = text_of(app.screen.query_one("#help-keys"))
        assert "ctrl+x" in keys and "app.quit" in keys and "registry.mergeable" in keys
        await pilot.press("escape")
        await pilot.press("ctrl+x")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_bad_keymap_is_reported_not_fatal(settings):
    from damoc_tui.app import DamocApp

    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "keymap.toml").write_text('"app.quit" = [1, 2]\n')
    app = DamocApp(settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert any("keymap.toml" in n.message for n in app._notifications)
        await pilot.press("q")                          # defaults still work
    assert not app.is_running


async def test_q_and_ctrl_q_quit_from_the_first_screen(make_app):
    for key in ("q", "ctrl+q"):
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RegistryScreen) and app.screen.loaded,
                           what="registry")
            await pilot.press(key)
            await pilot.pause()
        assert not app.is_running


async def test_command_palette_finds_runs_and_screens(make_app, scripted):
    run = scripted().complete()
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*f"open run {run.run_id[:8]}")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "RunScreen", what="run opened from the palette")
        assert app.screen.run_id == run.run_id
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Runs")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "HistoryScreen", what="runs screen")


def test_app_process_never_imports_torch(tmp_path):
    """Open every screen headless in a fresh interpreter: torch, transformers, peft and bert_score stay out."""
    code = r'''
import asyncio, sys
from damoc.settings import Settings
from damoc_tui.app import DamocApp

async def main():
    app = DamocApp(Settings.load())
    async with app.run_test(size=(100, 30)) as pilot:
        for keys in (["2"], ["1"], ["question_mark"], ["escape"], ["n"], ["pagedown"] * 6, ["escape"]):
            await pilot.press(*keys)
            await pilot.pause(0.3)
        await pilot.pause(1.0)
asyncio.run(main())
heavy = [m for m in ("torch", "transformers", "peft", "bert_score", "submodlib", "sklearn") if m in sys.modules]
print("HEAVY", heavy)
'''
    env = {**os.environ, "DAMOC_HOME": str(tmp_path / "home")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr[-2000:]


def test_import_damoc_tui_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, damoc_tui.app; "
                          "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
