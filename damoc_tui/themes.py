"""Colour themes: data files (TOML or YAML) turned into `textual.theme.Theme`s.

Where they come from, later ones overriding earlier ones of the same name:
  1. the packaged themes: `damoc_tui/_data/themes` in an installed wheel (pyproject force-include of `themes/`),
     `<repo>/themes` in an editable checkout;
  2. the user's folder, `Settings.themes_dir` (`damoc locate themes`).
A broken user file never stops the app: it is skipped and reported (`ThemeProblem`).
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from damoc.settings import Settings

DEFAULT_THEME = "damoc-dark"
ANSI_THEME = "damoc-ansi"
LIGHT_THEME = "damoc-light"
SUFFIXES = (".toml", ".yaml", ".yml")

# Fields a theme file may set: those of textual's Theme (checked against it at load time).
_COLOUR_FIELDS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
                  "surface", "panel", "boost")


@dataclass(frozen=True)
class ThemeProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def packaged_themes_dir() -> Path | None:
    """The themes shipped with damoc: inside the wheel, or the checkout's top-level `themes/` folder."""
    here = Path(__file__).resolve().parent
    for cand in (here / "_data" / "themes", here.parent / "themes"):
        if cand.is_dir():
            return cand
    return None


def theme_dirs(settings: Settings) -> list[Path]:
    dirs = [d for d in (packaged_themes_dir(), settings.themes_dir) if d is not None and d.is_dir()]
    return list(dict.fromkeys(dirs))


def _read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        return tomllib.loads(text)
    import yaml  # only when someone ships a YAML theme

    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("expected a mapping of theme fields")
    return data


def parse_theme(data: dict[str, Any], path: Path) -> Any:
    """A theme file's mapping to a textual Theme; raises ValueError naming the bad field."""
    from textual.color import Color, ColorParseError
    from textual.theme import Theme

    known = {f.name for f in dataclasses.fields(Theme)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}; theme fields are {', '.join(sorted(known))}")
    name = str(data.get("name") or path.stem)
    if "primary" not in data:
        raise ValueError("'primary' colour is required")
    ansi = bool(data.get("ansi", False))
    for key in _COLOUR_FIELDS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{key} = {value!r} is not a colour string")
        if not value.startswith("ansi_"):
            try:
                Color.parse(value)
            except ColorParseError:
                raise ValueError(f"{key} = {value!r} is not a colour (use #RRGGBB, a colour name or ansi_*)") from None
        elif not ansi:
            raise ValueError(f"{key} = {value!r}: ansi_* colours need `ansi = true`")
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise ValueError("'variables' must be a table of name = value")
    fields = {k: v for k, v in data.items() if k not in ("name", "variables")}
    return Theme(name=name, variables={str(k): str(v) for k, v in variables.items()}, **fields)


def load_themes(settings: Settings) -> tuple[list[Any], list[ThemeProblem]]:
    """Every theme found, and the files that could not be read."""
    themes: dict[str, Any] = {}
    problems: list[ThemeProblem] = []
    for folder in theme_dirs(settings):
        for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()):
            try:
                theme = parse_theme(_read(path), path)
            except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError) as e:
                problems.append(ThemeProblem(path, str(e)))
                continue
            except Exception as e:  # yaml.YAMLError and friends: a user file must not crash the app
                problems.append(ThemeProblem(path, f"{type(e).__name__}: {e}"))
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems


def limited_colour_terminal(env: dict[str, str] | None = None) -> bool:
    """True when the terminal should get the 16-colour theme: NO_COLOR, or a TERM without 256 colours.

    Mirrors rich's detection (COLORTERM=truecolor/24bit or a TERM ending in 256color mean more than 16 colours).
    """
    env = dict(os.environ) if env is None else env
    if "NO_COLOR" in env:
        return True
    forced = env.get("TEXTUAL_COLOR_SYSTEM", "auto").lower()
    if forced != "auto":
        return forced in ("standard", "windows")
    if env.get("COLORTERM", "").strip().lower() in ("truecolor", "24bit"):
        return False
    colours = env.get("TERM", "").strip().lower().rpartition("-")[2]
    return colours not in ("256color", "kitty")


def choose_theme(settings: Settings, requested: str | None, available: set[str],
                 env: dict[str, str] | None = None) -> str:
    """The theme to start with: --theme, else DAMOC_THEME / settings.toml, else the 16-colour theme on a limited
    terminal, else damoc-dark. A theme name that does not exist falls back to the default (the caller warns)."""
    if requested:
        return requested if requested in available else DEFAULT_THEME
    explicit = settings.theme and settings.theme != DEFAULT_THEME
    if explicit and settings.theme in available:
        return settings.theme
    if limited_colour_terminal(env) and ANSI_THEME in available:
        return ANSI_THEME
    return DEFAULT_THEME if DEFAULT_THEME in available else "textual-dark"
