"""What the pipeline and the zoo call: resolve a name to local folders, register the demo zoo."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from damoc.errors import DamocError
from damoc.registry.models import Candidate, ModelFacts, ModelRef, ResolvedCandidate, human_bytes


def resolve_candidate(settings: Any, name: str) -> ResolvedCandidate:
    """Local folders for `name` (hub ids go through the local HF cache; nothing is downloaded).

    Raises DamocError when the Chat is not on this machine. `base_path` is set only when sparse merging is supported
    (a usable W_pre); otherwise `merge_reason` says why pruning is skipped."""
    from damoc.registry.store import RegistryStore

    c = RegistryStore(settings).get(name)
    cap = c.capability
    assert cap is not None
    if cap.chat_path is None:
        if c.chat.kind == "folder":
            raise DamocError(f"{c.name}: Chat folder {c.chat.id} is not usable ({cap.merge_reason})",
                             f"restore the folder, or re-register it: damoc registry add --chat FOLDER "
                             f"--name {c.name} --replace")
        size = human_bytes(c.chat_facts.estimated_size(), approx=c.chat_facts.size_estimated)
        partial = " (partly downloaded)" if cap.chat_location == "hf-cache-partial" else ""
        raise DamocError(f"{c.name}: {c.chat.id} is not in the local Hugging Face cache{partial} ({size} to download)",
                         f"damoc registry pull {c.name}" + (" --chat-only" if c.base else ""))
    if cap.state == "unreadable" and cap.detail.get("unreadable") == "chat":
        raise DamocError(f"{c.name}: {cap.merge_reason.removeprefix('pruning skipped: ')}",
                         f"re-download it: damoc registry pull {c.name}")
    reason = cap.merge_reason
    if cap.state == "not_local" and c.base is not None:
        size = human_bytes(c.base_facts.estimated_size() if c.base_facts else None,
                           approx=bool(c.base_facts and c.base_facts.size_estimated))
        reason = (f"pruning skipped: Base (W_pre) {c.base.id} not downloaded ({size}); "
                  f"damoc registry pull {c.name} --base-only")
    return ResolvedCandidate(
        name=c.name, chat_path=cap.chat_path,
        base_path=cap.base_path if cap.merge_supported else None,
        architecture=c.chat_facts.architecture, layers=c.chat_facts.layers,
        merge_supported=cap.merge_supported, merge_reason="" if cap.merge_supported else reason,
        trust_remote_code=bool(c.chat_facts.trust_remote_code), parameters=c.chat_facts.parameters,
        revision=c.chat.revision,
    )


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def register_zoo(settings: Any, zoo_candidates: Iterable[Any]) -> list[Candidate]:
    """Register (or refresh) the demo zoo's pairs: items with name, architecture, parameters, layers, chat_path,
    base_path (or None). Idempotent: re-registering replaces the earlier zoo entries of the same names, and never
    overwrites an entry the user added under the same name (that raises NameTaken)."""
    from damoc.registry.store import RegistryStore

    cands = []
    for item in zoo_candidates:
        chat = _get(item, "chat_path")
        if not chat or not (Path(chat) / "config.json").is_file():
            raise DamocError(f"zoo candidate {_get(item, 'name')!r}: Chat folder {chat} has no config.json",
                             "rebuild the zoo: damoc zoo build")
        base = _get(item, "base_path")
        arch = _get(item, "architecture")
        cands.append(Candidate(
            name=str(_get(item, "name")), chat=ModelRef(str(Path(chat).resolve())),
            base=ModelRef(str(Path(base).resolve())) if base else None, family="zoo", source="zoo",
            notes=f"demo zoo ({arch})", no_base_reason="" if base else "the demo zoo ships this one without a Base",
            chat_facts=ModelFacts(architecture=arch, parameters=_get(item, "parameters"), layers=_get(item, "layers"),
                                  origin="zoo"),
        ))
    return RegistryStore(settings).add_many(cands, replace_sources=("zoo",))
