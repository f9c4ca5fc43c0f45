"""Issue 16, item 8 (settings): every value that is set is checked at load, naming the variable or the file and
key, so every command reports a bad setting in one line instead of running on it."""
from __future__ import annotations

import pytest

from damoc.errors import ConfigError
from damoc.settings import Settings
from tests.helpers.cli import damoc


@pytest.mark.parametrize("var,value,words", [
    ("DAMOC_DEVICE", "banana", "not a device"), ("DAMOC_DEVICE", "cuda:x", "not a device"),
    ("DAMOC_DEVICE", "CPU ", "not a device"),
    ("DAMOC_THREADS", "-7", "thread count"), ("DAMOC_THREADS", "2.5", "not a valid int"),
    ("DAMOC_THREADS", "99999", "thread count"),
    ("DAMOC_REFRESH_HZ", "nan", "refresh rate"), ("DAMOC_REFRESH_HZ", "inf", "refresh rate"),
    ("DAMOC_REFRESH_HZ", "0", "refresh rate"), ("DAMOC_REFRESH_HZ", "fast", "not a valid float"),
    ("DAMOC_THEME", "no-such-theme", "not a theme"), ("DAMOC_ZOO_SIZE", "huge", "not a zoo size"),
    ("DAMOC_HF_OFFLINE", "maybe", "not a valid bool"),
])
def test_bad_environment_values_are_named(monkeypatch, var, value, words):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        Settings.load()
    assert var in str(e.value) and words in str(e.value) and var in e.value.hint


@pytest.mark.parametrize("var,value,attr,expected", [
    ("DAMOC_DEVICE", "cuda:1", "device", "cuda:1"), ("DAMOC_DEVICE", "mps", "device", "mps"),
    ("DAMOC_THREADS", "0", "threads", 0), ("DAMOC_REFRESH_HZ", "2.5", "refresh_hz", 2.5),
    ("DAMOC_THEME", "damoc-light", "theme", "damoc-light"), ("DAMOC_THEME", "nord", "theme", "nord"),
    ("DAMOC_ZOO_SIZE", "test", "zoo_size", "test"), ("DAMOC_HF_OFFLINE", "auto", "hf_offline", None),
])
def test_good_values_pass(monkeypatch, var, value, attr, expected):
    monkeypatch.setenv(var, value)
    assert getattr(Settings.load(), attr) == expected


@pytest.mark.parametrize("toml,words", [
    ('[tui]\ntheme = "damoc-dark"\n', "unknown table 'tui'"),
    ('threds = 2\n', "did you mean 'threads'"),
    ('device = 5\n', "device = 5"), ('threads = [1]\n', "threads = [1]"), ('threads = true\n', "threads = True"),
    ('threads = 1.5\n', "threads = 1.5"), ('refresh_hz = -1\n', "refresh rate"), ('[device]\nx = 1\n', "device"),
    ('theme = "nope"\n', "not a theme"),
])
def test_bad_file_values_name_file_and_key(isolated_home, toml, words):
    isolated_home.mkdir(parents=True)
    (isolated_home / "settings.toml").write_text(toml)
    with pytest.raises(ConfigError) as e:
        Settings.load()
    assert "settings.toml" in str(e.value) and words in str(e.value)


def test_a_user_theme_by_file_or_name_field(isolated_home, monkeypatch):
    themes = isolated_home / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text('name = "my-theme"\nprimary = "#ff0000"\n')
    for name in ("mine", "my-theme"):
        monkeypatch.setenv("DAMOC_THEME", name)
        assert Settings.load().theme == name


def test_settings_file_edge_cases(isolated_home, monkeypatch, tmp_path):
    isolated_home.mkdir(parents=True)
    (isolated_home / "settings.toml").write_bytes(b'\xef\xbb\xbfthreads = 2\n')        # saved by Notepad
    assert Settings.load().threads == 2
    (isolated_home / "settings.toml").unlink()
    (isolated_home / "settings.toml").mkdir()
    with pytest.raises(ConfigError, match="not a file"):
        Settings.load()
    monkeypatch.setenv("DAMOC_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="DAMOC_CONFIG"):
        Settings.load()


def test_every_command_reports_a_bad_setting():
    for args in (["locate"], ["registry", "list"], ["runs"]):
        r = damoc(*args, env={"DAMOC_THREADS": "-7"})
        assert r.returncode == 2 and "DAMOC_THREADS" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
