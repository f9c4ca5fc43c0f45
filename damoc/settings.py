"""One settings object: defaults < settings file < `DAMOC_*` environment variables.

The settings file is TOML at `<home>/settings.toml` (or `$DAMOC_CONFIG`). Every field can be set from the
environment as `DAMOC_<FIELD>` (upper case), e.g. `DAMOC_DEVICE=cpu`, `DAMOC_THEME=damoc-ansi`.
No module-level singleton: callers load a `Settings` and pass it down.
"""
from __future__ import annotations

import dataclasses
import os
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
    """auto | cpu | cuda | cuda:N. auto picks cuda when available."""
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
        s = cls()
        if "home" in overrides and overrides["home"] is not None:
            s.home = Path(overrides["home"]).expanduser()
        path = s.settings_file
        values: dict[str, Any] = {}
        if path.is_file():
            try:
                values.update(tomllib.loads(path.read_text(encoding="utf-8")))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{path}: not valid TOML ({e})", "fix or delete the settings file") from e
        for f in fields(cls):
            env = os.environ.get(f"DAMOC_{f.name.upper()}")
            if env is not None and f.name != "home":
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None and k != "home"})
        hints = get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r}", f"known settings: {', '.join(sorted(known))}")
            setattr(s, key, _coerce(key, raw, hints[key], path))
        return s

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["home"] = str(self.home)
        return d


def _coerce(key: str, raw: Any, hint: Any, source: Path) -> Any:
    text = str(raw)
    try:
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
            return int(raw)
        if hint is float:
            return float(raw)
        return text
    except ValueError:
        raise ConfigError(f"setting {key!r} = {raw!r} is not a valid {getattr(hint, '__name__', hint)}",
                          f"check DAMOC_{key.upper()} or {source}") from None
