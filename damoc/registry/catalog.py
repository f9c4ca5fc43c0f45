"""The built-in catalog: TOML data files, one per model family, read-only.

Installed wheels carry them as `damoc/_data/registry/*.toml` (pyproject force-include); an editable checkout reads
`<repo>/registry/*.toml`. Catalog entries are never copied into the user's registry file: the store lays them under
the user's own entries at read time, so a newer damoc brings a newer catalog.

File format (see registry/README.md):

    family = "qwen"
    [[candidate]]
    name = "Qwen2.5-7B"          # unique across the catalog
    chat = "Qwen/Qwen2.5-7B-Instruct"
    base = "Qwen/Qwen2.5-7B"     # omit when no Base was released, and say so in no_base
    no_base = "..."              # why there is no Base (required when base is omitted)
    paper = true                 # one of the DaMoC paper's eight
    architecture, parameters, layers, hidden_size, intermediate_size, attention_heads, kv_heads, vocab_size,
    dtype, base_dtype, license, gated, trust_remote_code, notes
"""
from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.registry.models import Candidate, ModelFacts, ModelRef, check_name, HUB_ID_RE

FACT_KEYS = ("architecture", "parameters", "layers", "hidden_size", "intermediate_size", "attention_heads",
             "kv_heads", "vocab_size", "dtype", "license", "gated", "trust_remote_code")
ALLOWED_KEYS = set(FACT_KEYS) | {"name", "chat", "base", "chat_revision", "base_revision", "no_base", "paper",
                                 "notes", "base_dtype", "family"}


def catalog_dir() -> Path:
    """`damoc/_data/registry` when installed from a wheel, else `<repo>/registry` (editable checkout)."""
    here = Path(__file__).resolve().parent.parent          # .../damoc
    packaged = here / "_data" / "registry"
    if packaged.is_dir():
        return packaged
    return here.parent / "registry"


def _entry(raw: dict[str, Any], family: str, where: str) -> Candidate:
    unknown = set(raw) - ALLOWED_KEYS
    if unknown:
        raise DamocError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
                         f"allowed: {', '.join(sorted(ALLOWED_KEYS))}")
    name = check_name(str(raw.get("name", "")))
    chat = str(raw.get("chat", ""))
    if not HUB_ID_RE.match(chat):
        raise DamocError(f"{where}: chat {chat!r} is not a hub id (org/name)", "catalog entries name hub models")
    base = raw.get("base")
    if base is not None and not HUB_ID_RE.match(str(base)):
        raise DamocError(f"{where}: base {base!r} is not a hub id (org/name)", "omit base when there is none")
    if base is None and not raw.get("no_base"):
        raise DamocError(f"{where}: {name} has no base and no `no_base` reason", "say why no Base is listed")
    facts = {k: raw[k] for k in FACT_KEYS if k in raw}
    chat_facts = ModelFacts(**facts, chat_template=True, origin="catalog")
    base_facts = None
    if base is not None:
        bf = dict(facts, dtype=raw.get("base_dtype", facts.get("dtype")))
        base_facts = ModelFacts(**bf, origin="catalog")
    for f in (chat_facts, base_facts):
        if f is not None and f.size_bytes is None:
            est = f.estimated_size()
            if est:
                f.size_bytes, f.size_estimated = est, True
    return Candidate(
        name=name, chat=ModelRef(chat, raw.get("chat_revision")),
        base=ModelRef(str(base), raw.get("base_revision")) if base is not None else None,
        family=str(raw.get("family") or family), source="catalog", notes=str(raw.get("notes", "")),
        no_base_reason=str(raw.get("no_base", "")), paper=bool(raw.get("paper", False)),
        chat_facts=chat_facts, base_facts=base_facts,
    )


def load_catalog_dir(folder: Path) -> list[Candidate]:
    out: list[Candidate] = []
    seen: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise DamocError(f"catalog file {path}: not valid TOML ({e})", "fix the file (it ships with damoc)") from e
        family = str(data.get("family") or path.stem)
        for i, raw in enumerate(data.get("candidate", []), start=1):
            c = _entry(raw, family, f"{path.name} candidate #{i}")
            key = c.name.lower()
            if key in seen:
                raise DamocError(f"catalog name {c.name!r} appears in {seen[key]} and {path.name}",
                                 "catalog names must be unique")
            seen[key] = path.name
            out.append(c)
    return sorted(out, key=lambda c: not c.paper)   # the paper's eight first, then the quick picks (stable)


@functools.lru_cache(maxsize=4)
def _cached(folder: str) -> tuple[Candidate, ...]:
    return tuple(load_catalog_dir(Path(folder)))


def load_catalog(folder: Path | None = None) -> list[Candidate]:
    """The built-in catalog (parsed once per process). Returns fresh copies, safe to modify."""
    import copy

    return [copy.deepcopy(c) for c in _cached(str(folder or catalog_dir()))]
