"""One settings object: defaults < settings file < `DAMOC_*` environment variables.

The settings file is TOML at `<home>/settings.toml` (or `$DAMOC_CONFIG`). Every field can be set from the
environment as `DAMOC_<FIELD>` (upper case), e.g. `DAMOC_DEVICE=cpu`, `DAMOC_THEME=damoc-ansi`.
No module-level singleton: callers load a `Settings` and pass it down.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from damoc.errors import ConfigError

APP_NAME = "damoc"


def _default_home() -> Path:
    env = os.environ.get("DAMOC_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs  # light; keeps the user data dir convention of each OS

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass
class Settings:
    home: Path = field(default_factory=_default_home)
    """Root of everything damoc writes: registry, caches, runs, zoo."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps. auto picks cuda when available."""
    threads: int = 0
    """torch threads in workers; 0 = torch's default."""
    encoder: str = ""
    """Sentence encoder for embeddings and BERTScore: HF id or folder. Empty = the offline all-MiniLM-L6-v2."""
    hf_offline: bool | None = None
    """Force HF offline mode; None = follow HF_HUB_OFFLINE."""
    theme: str = "damoc-dark"
    refresh_hz: float = 4.0
    """Max UI refresh rate of live views."""
    zoo_size: str = "demo"
    """Zoo size used by `damoc demo`."""

    # -- locations -------------------------------------------------------------------------------
    @property
    def registry_path(self) -> Path:
        return self.home / "registry.json"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def zoo_dir(self) -> Path:
        return self.home / "zoo"

    @property
    def themes_dir(self) -> Path:
        return self.home / "themes"

    @property
    def settings_file(self) -> Path:
        env = os.environ.get("DAMOC_CONFIG")
        return Path(env).expanduser() if env else self.home / "settings.toml"

    def locations(self) -> dict[str, Path]:
        return {
            "home": self.home,
            "settings": self.settings_file,
            "registry": self.registry_path,
            "runs": self.runs_dir,
            "cache": self.cache_dir,
            "zoo": self.zoo_dir,
            "themes": self.themes_dir,
        }

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, **overrides: Any) -> "Settings":
        """Defaults < settings file < `DAMOC_*` < `overrides`. Every value that is set is checked here, naming the
        variable or the file and key it came from (ConfigError), so no command starts on a bad setting."""
        s = cls()
        if "home" in overrides and overrides["home"] is not None:
            s.home = Path(overrides["home"]).expanduser()
        path = s.settings_file
        values: dict[str, tuple[Any, str]] = {}          # key -> (value, where it came from)
        for key, raw in _read_file(path).items():
            values[key] = (raw, f"{path}: {key}")
        for f in fields(cls):
            env = os.environ.get(f"DAMOC_{f.name.upper()}")
            if env is not None and f.name != "home":
                values[f.name] = (env, f"DAMOC_{f.name.upper()}")
        values.update({k: (v, f"setting {k!r}") for k, v in overrides.items() if v is not None and k != "home"})
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)} - {"home"}
        for key, (raw, source) in values.items():
            if key not in known:
                what = "table" if isinstance(raw, dict) else "setting"
                close = difflib.get_close_matches(key, sorted(known), n=1)
                raise ConfigError(f"{path}: unknown {what} {key!r}",
                                  (f"did you mean {close[0]!r}? " if close else "")
                                  + f"known settings: {', '.join(sorted(known))}")
            value = _coerce(key, raw, hints[key], source)
            _check(s, key, value, source)
            setattr(s, key, value)
        return s

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["home"] = str(self.home)
        return d


def _read_file(path: Path) -> dict[str, Any]:
    explicit = os.environ.get("DAMOC_CONFIG")
    if not path.exists():
        if explicit:
            raise ConfigError(f"DAMOC_CONFIG={explicit}: no such file", "unset DAMOC_CONFIG or point it at a file")
        return {}
    if not path.is_file():
        raise ConfigError(f"{path}: the settings file is not a file", "remove it or set DAMOC_CONFIG")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})", "fix or delete the settings file") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the settings file ({e.strerror or e})",
                          "check its permissions") from None


def _coerce(key: str, raw: Any, hint: Any, source: str) -> Any:
    """A value of the field's type: strings (from the environment) are parsed; values from TOML must already
    have a fitting type (`threads = "4"` is fine, `threads = [4]` or `device = 5` is not)."""
    text = str(raw)
    name = getattr(hint, "__name__", "bool" if hint == (bool | None) else str(hint))
    try:
        if isinstance(raw, (dict, list)) or (isinstance(raw, bool) and hint not in (bool, bool | None)):
            raise ValueError(text)
        if hint is Path:
            return Path(text).expanduser()
        if hint is bool or hint == (bool | None):
            if isinstance(raw, bool):
                return raw
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            if text.lower() in ("", "none", "auto") and hint != bool:
                return None
            raise ValueError(text)
        if hint is int:
            if isinstance(raw, float):
                raise ValueError(text)
            return int(text.strip())
        if hint is float:
            return float(text.strip()) if not isinstance(raw, (int, float)) else float(raw)
        if not isinstance(raw, str):
            raise ValueError(text)
        return text
    except ValueError:
        raise ConfigError(f"{source} = {raw!r} is not a valid {name}", _fix(key, source)) from None


def _fix(key: str, source: str) -> str:
    return f"set DAMOC_{key.upper()} to a valid value or unset it" if source.startswith("DAMOC_") else (
        f"fix {key!r} in the settings file" if ":" in source else f"pass a valid {key}")


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
MAX_THREADS = 4096
MAX_REFRESH_HZ = 120.0


def _check(s: Settings, key: str, value: Any, source: str) -> None:
    """The value's range or name; a bad one is a ConfigError naming `source` (the variable, or file and key)."""
    problem: str | None = None
    if key == "device" and not DEVICE.fullmatch(value):
        problem = "is not a device (auto, cpu, cuda, cuda:N or mps)"
    elif key == "threads" and not 0 <= value <= MAX_THREADS:
        problem = f"is not a thread count (0 = torch's default, up to {MAX_THREADS})"
    elif key == "refresh_hz" and not (math.isfinite(value) and 0 < value <= MAX_REFRESH_HZ):
        problem = f"is not a refresh rate (a number of times a second, above 0 and up to {MAX_REFRESH_HZ:g})"
    elif key == "zoo_size":
        from damoc.zoo.specs import SIZES       # only when set: the zoo package is not needed to load settings

        if value not in SIZES:
            problem = f"is not a zoo size ({', '.join(SIZES)})"
    elif key == "theme":
        names = theme_names(s)
        if names is not None and value not in names:
            names |= _builtin_themes()
        if names is not None and value not in names:
            close = difflib.get_close_matches(value, sorted(names), n=1)
            problem = "is not a theme" + (f" (did you mean {close[0]!r}?)" if close else "") + \
                f"; themes: {', '.join(sorted(names))}"
    if problem:
        raise ConfigError(f"{source} = {value!r} {problem}", _fix(key, source))


def theme_names(s: Settings) -> set[str] | None:
    """The theme names the app would find: the themes damoc ships, then `<home>/themes` (the folders the app's
    theme loader reads), by file name and `name` field, read here without importing the app. None when no shipped
    theme is found (nothing to check against)."""
    shipped = _shipped_theme_files()
    if not shipped:
        return None
    user = [f for f in s.themes_dir.iterdir() if f.is_file()] if s.themes_dir.is_dir() else []
    names: set[str] = set()
    for f in shipped + user:
        if f.suffix in (".toml", ".yaml", ".yml"):
            names |= {f.stem, _theme_name(f) or f.stem}
    return names


def _shipped_theme_files() -> list[Path]:
    """The theme files in this installation: the checkout's top-level `themes/` (editable install), else the
    files the installed distribution lists under `_data/themes` (pyproject force-includes them there)."""
    checkout = Path(__file__).resolve().parents[1] / "themes"
    if checkout.is_dir():
        return [f for f in checkout.iterdir() if f.is_file()]
    import importlib.metadata

    try:
        files = importlib.metadata.files(APP_NAME) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [Path(str(f.locate())) for f in files if f.parent.name == "themes" and f.parent.parent.name == "_data"]


def _builtin_themes() -> set[str]:
    """textual's own themes, which the app offers too (imported only to check a name no theme file has)."""
    try:
        from textual.theme import BUILTIN_THEMES
    except ImportError:
        return set()
    return set(BUILTIN_THEMES)


def _theme_name(f: Path) -> str | None:
    """A theme file's `name` field (the app names a theme by it, or by the file name)."""
    try:
        text = f.read_text(encoding="utf-8")
        if f.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception:  # a broken theme file is the app's to report (ThemeProblem), not a settings error
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
