"""Turn a declared entry into what is true on this machine: where Chat and Base are, their facts read from files,
and the sparse-merge capability. Pure function of the entry and the file system (no network, no weights loaded)."""
from __future__ import annotations

import os
from pathlib import Path

from damoc.registry.capability import UnreadableModel, compare_checkpoints, facts_from_folder
from damoc.registry.hfcache import cached_snapshot
from damoc.registry.models import Candidate, Capability, ModelFacts, ModelRef, human_bytes

_FACTS_MEMO: dict[tuple[str, int, int], ModelFacts] = {}


def locate(ref: ModelRef, *, zoo: bool = False) -> tuple[str, str | None, str]:
    """(location, local folder or None, problem) for one reference."""
    if ref.kind == "folder":
        p = Path(ref.id)
        if (p / "config.json").is_file():
            return ("zoo" if zoo else "folder"), str(p), ""
        if p.is_dir():
            return "missing", None, f"{p} has no config.json"
        return "missing", None, f"folder {p} not found (moved or deleted?)"
    snap = cached_snapshot(ref.id, ref.revision)
    if snap is None:
        return "hub", None, ""
    if not snap.complete:
        return "hf-cache-partial", None, (f"partly downloaded ({len(snap.missing)} file(s) missing)"
                                          if snap.missing else "weights not downloaded yet")
    return "hf-cache", str(snap.path), ""


def local_facts(folder: str) -> ModelFacts:
    """Facts read from a folder, memoised per process on the config/folder modification times."""
    p = Path(folder)
    try:
        key = (os.path.realpath(p), (p / "config.json").stat().st_mtime_ns, p.stat().st_mtime_ns)
    except OSError:
        key = None
    if key and key in _FACTS_MEMO:
        return _FACTS_MEMO[key]
    facts = facts_from_folder(p)
    if key:
        _FACTS_MEMO[key] = facts
    return facts


def assess(c: Candidate, hub_facts: dict[str, ModelFacts] | None = None) -> Candidate:
    """Fill `c.capability` and overlay facts: files > hub-confirmed > catalog. Mutates and returns `c`."""
    hub_facts = hub_facts or {}
    zoo = c.source == "zoo"
    chat_loc, chat_path, chat_problem = locate(c.chat, zoo=zoo)
    if c.chat.id in hub_facts:
        c.chat_facts = hub_facts[c.chat.id].merged_over(c.chat_facts)
    unreadable, unreadable_role = "", ""
    if chat_path:
        try:
            c.chat_facts = local_facts(chat_path).merged_over(c.chat_facts)
        except UnreadableModel as e:
            unreadable, unreadable_role = e.message, "chat"
    base_loc = base_path = None
    base_problem = ""
    if c.base is not None:
        base_loc, base_path, base_problem = locate(c.base, zoo=zoo)
        bf = c.base_facts or ModelFacts(origin="none")
        if c.base.id in hub_facts:
            bf = hub_facts[c.base.id].merged_over(bf)
        if base_path:
            try:
                bf = local_facts(base_path).merged_over(bf)
            except UnreadableModel as e:
                if not unreadable:
                    unreadable, unreadable_role = e.message, "base"
        c.base_facts = bf

    # what it takes to make the pair local
    need, estimated, parts = 0, False, []
    for role, ref, path, facts, problem in (("Chat", c.chat, chat_path, c.chat_facts, chat_problem),
                                            ("Base", c.base, base_path, c.base_facts, base_problem)):
        if ref is None or path is not None:
            continue
        size = facts.estimated_size() if facts else None
        if size is None:
            estimated = True
        else:
            need += size
            estimated = estimated or bool(facts and (facts.size_estimated or not facts.size_bytes))
        parts.append((role, ref, problem))
    download = need if not parts or need else None

    def cap(state, ok, reason, **kw) -> Capability:
        return Capability(state, ok, reason, chat_location=chat_loc, base_location=base_loc,  # type: ignore[arg-type]
                          chat_path=chat_path, base_path=base_path,
                          download_bytes=download, download_estimated=estimated and bool(parts), **kw)

    if unreadable:
        c.capability = cap("unreadable", False, f"pruning skipped: {unreadable}", detail={"unreadable": unreadable_role})
    elif c.base is None:
        why = f"; {c.no_base_reason}" if c.no_base_reason else ""
        c.capability = cap("no_base", False, f"pruning skipped: no Base (W_pre){why}")
    elif parts:
        folder_gone = [f"{role}: {problem}" for role, ref, problem in parts if ref.kind == "folder"]
        size = human_bytes(download, approx=estimated) if download else "size unknown"
        which = " and ".join(role for role, _, _ in parts)
        if folder_gone:
            reason = "not available locally (" + "; ".join(folder_gone) + ")"
        else:
            reason = f"not available locally ({which} not downloaded, download needed, {size})"
        checks = getattr(hub_facts, "checks", {})
        hub = checks.get((str(c.chat), str(c.base))) if not folder_gone else None
        if hub is not None:          # pruning still needs the files: the pair stays not local, with what the hub says
            reason += f"; {hub.describe()}"
        c.capability = cap("not_local", False, reason, hub_check=hub)
    elif os.path.realpath(chat_path) == os.path.realpath(base_path):  # type: ignore[arg-type]
        c.capability = cap("base_incompatible", False, "pruning skipped: Chat and Base are the same folder (the task "
                           "vector Chat - Base is zero)", detail={"same_folder": chat_path})
    else:
        got = compare_checkpoints(Path(chat_path), Path(base_path))  # type: ignore[arg-type]
        c.capability = cap(got.state, got.merge_supported, got.merge_reason, detail=got.detail, notes=got.notes)
    return c


def merge_check(c: Candidate) -> dict[str, object]:
    """Where the sparse-merge answer of an assessed entry comes from, for the pre-flight: `checked` is "files" (on
    this machine), "hub" (headers read by `damoc registry check --online`) or "" (not known before a download)."""
    cap = c.capability
    if cap is None:
        return {"checked": "", "supported": None, "reason": "not assessed"}
    if cap.state != "not_local":
        return {"checked": "files", "supported": cap.merge_supported,
                "reason": "" if cap.merge_supported else cap.merge_reason}
    if cap.hub_check is not None:
        return {"checked": "hub", "supported": cap.hub_check.merge_supported, "reason": cap.hub_check.describe()}
    return {"checked": "", "supported": None,
            "reason": "not known before the download: `damoc registry check --online " + c.name + "` reads the "
                      "headers on the hub (no weights)"}
