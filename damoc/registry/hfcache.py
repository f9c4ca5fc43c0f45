"""Where hub ids live on this machine: the local Hugging Face cache (no network, ever).

The cache directory is read from the environment at call time (HF_HUB_CACHE, then HF_HOME/hub, then
~/.cache/huggingface/hub), because huggingface_hub's own constants are frozen when it is first imported.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from damoc.registry.capability import weight_index, UnreadableModel


def hf_cache_dir() -> Path:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "huggingface" / "hub"


@dataclass(frozen=True)
class CachedModel:
    path: Path                  # the snapshot folder
    complete: bool              # every weight shard present
    missing: tuple[str, ...] = ()


def cached_snapshot(repo_id: str, revision: str | None = None, cache_dir: Path | None = None) -> CachedModel | None:
    """The cached snapshot of `repo_id` at `revision` (default main) if its config.json is in the cache."""
    cache = Path(cache_dir) if cache_dir else hf_cache_dir()
    if not (cache / f"models--{repo_id.replace('/', '--')}").is_dir():
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(cache), revision=revision)
    except Exception:                        # invalid repo id for the validator: simply not cached
        return None
    if not isinstance(hit, str):             # None or the "known not to exist" sentinel
        return None
    snap = Path(hit).parent
    try:
        wi = weight_index(snap)
    except UnreadableModel:
        return CachedModel(snap, False, ("unreadable index",))
    complete = wi.format != "none" and not wi.missing
    return CachedModel(snap, complete, tuple(wi.missing))
