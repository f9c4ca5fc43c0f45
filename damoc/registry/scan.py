"""Local discovery: models already in the Hugging Face cache (`huggingface_hub.scan_cache_dir`) and in given folders,
Chat paired with Base where names and configs match, registered with their sizes.

Pairing: a name is split into tokens on - _ . / and the chat markers (instruct, chat, it, sft, dpo, ...) and base
markers (base, pretrained, pt) are removed; a Chat and a Base pair when the rest is equal (same org for cache repos,
same parent folder for folders: `zoo/x/chat` + `zoo/x/base`) and their configs agree on architecture, layer count
and hidden size. Tensor-level compatibility is then computed like for any entry (capability.py).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damoc.registry.capability import UnreadableModel, facts_from_folder
from damoc.registry.models import Candidate, ModelFacts, ModelRef, NAME_RE

if TYPE_CHECKING:
    from damoc.registry.store import RegistryStore

CHAT_MARKERS = {"instruct", "chat", "it", "sft", "dpo", "rlhf", "orpo", "kto", "ppo", "grpo", "assistant"}
BASE_MARKERS = {"base", "pretrained", "pt"}
GENERIC = {"model", "hf", "weights", "snapshot", "checkpoint", "final"}
MAX_DEPTH = 4


@dataclass
class Found:
    ref: ModelRef
    folder: Path                 # local folder (HF cache snapshot or the folder itself)
    label: str                   # repo name or folder name
    group: str                   # org (cache) or parent folder (folders)
    facts: ModelFacts
    role: str = "chat"           # chat | base

    @property
    def key(self) -> tuple[str, str]:
        return self.group, " ".join(t for t in _tokens(self.label) if t not in CHAT_MARKERS | BASE_MARKERS)


@dataclass
class ScanReport:
    added: list[Candidate] = field(default_factory=list)
    known: list[tuple[str, str]] = field(default_factory=list)      # (path or id, existing candidate name)
    skipped: list[tuple[str, str]] = field(default_factory=list)    # (path or id, reason)

    def to_dict(self) -> dict[str, Any]:
        return {"added": [c.summary() for c in self.added],
                "known": [{"model": m, "candidate": n} for m, n in self.known],
                "skipped": [{"model": m, "reason": r} for m, r in self.skipped]}


def _tokens(label: str) -> list[str]:
    return [t for t in re.split(r"[-_./\s]+", label.lower()) if t]


def _role(label: str, facts: ModelFacts) -> str:
    toks = set(_tokens(label))
    if toks & CHAT_MARKERS:
        return "chat"
    if toks & BASE_MARKERS:
        return "base"
    # no marker in the name: a chat template is the best remaining hint (some Base repos ship one too)
    return "chat" if facts.chat_template else "base"


def _from_cache(cache_dir: Path | None, skipped: list[tuple[str, str]]) -> list[Found]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from damoc.registry.hfcache import hf_cache_dir

    cache = Path(cache_dir) if cache_dir else hf_cache_dir()
    try:
        info = scan_cache_dir(str(cache))
    except CacheNotFound:
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        # the revision that `main` points at, else the most recent one
        revs = sorted(repo.revisions, key=lambda r: ("main" not in r.refs, -r.last_modified))
        if not revs:
            continue
        rev = revs[0]
        folder = Path(rev.snapshot_path)
        if not (folder / "config.json").is_file():
            skipped.append((repo.repo_id, "no config.json in the cached snapshot (not a transformers model)"))
            continue
        try:
            facts = facts_from_folder(folder)
        except UnreadableModel as e:
            skipped.append((repo.repo_id, e.message))
            continue
        from damoc.registry.capability import weight_index

        wi = weight_index(folder)
        if wi.format == "none" or wi.missing:
            skipped.append((repo.repo_id, "weights not (fully) downloaded: `damoc registry pull` or `hf download` "
                                          "completes it"))
            continue
        revision = None if "main" in rev.refs else rev.commit_hash
        org, _, name = repo.repo_id.partition("/")
        out.append(Found(ModelRef(repo.repo_id, revision), folder, name, org, facts, _role(name, facts)))
    return out


def _model_dirs(root: Path) -> list[Path]:
    if (root / "config.json").is_file():
        return [root]
    found: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        p = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "config.json" in filenames and p != root:
            found.append(p)
            dirnames[:] = []              # a model folder's subfolders are not models of their own
        elif len(p.parts) - base_depth >= MAX_DEPTH:
            dirnames[:] = []
    return found


def _from_folders(paths: list[Path], skipped: list[tuple[str, str]]) -> list[Found]:
    out = []
    for root in paths:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            skipped.append((str(root), "not a folder"))
            continue
        dirs = _model_dirs(root)
        if not dirs:
            skipped.append((str(root), f"no model folder (config.json) within {MAX_DEPTH} levels"))
            continue
        for d in dirs:
            try:
                facts = facts_from_folder(d)
            except UnreadableModel as e:
                skipped.append((str(d), e.message))
                continue
            label = d.name
            group = str(d.parent)
            if set(_tokens(label)) <= CHAT_MARKERS | BASE_MARKERS | GENERIC:   # zoo/x/chat, zoo/x/base
                label, group = d.parent.name + "-" + d.name, str(d.parent.parent) + "/" + d.parent.name
            out.append(Found(ModelRef(str(d)), d, label, group, facts, _role(label, facts)))
    return out


def _compatible(a: ModelFacts, b: ModelFacts) -> bool:
    return (a.architecture, a.layers, a.hidden_size) == (b.architecture, b.layers, b.hidden_size)


def _safe_name(label: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", label).strip("-._+")[:100] or "model"
    return name if NAME_RE.match(name) else "m-" + name


def pair(found: list[Found]) -> tuple[list[tuple[Found, Found | None]], list[Found]]:
    """(Chat, Base or None) pairs, and Bases left without a Chat."""
    chats = [f for f in found if f.role == "chat"]
    bases = [f for f in found if f.role == "base"]
    used: set[int] = set()
    pairs: list[tuple[Found, Found | None]] = []
    for c in chats:
        match = next((i for i, b in enumerate(bases) if i not in used and b.key == c.key
                      and _compatible(c.facts, b.facts)), None)
        if match is not None:
            used.add(match)
        pairs.append((c, bases[match] if match is not None else None))
    return pairs, [b for i, b in enumerate(bases) if i not in used]


def scan(store: RegistryStore, paths: list[Path] | None = None, *, hf_cache: bool = True, cache_dir: Path | None = None,
         dry_run: bool = False) -> ScanReport:
    """Find local models, pair them and register the new ones (source "scan") in one transaction."""
    report = ScanReport()
    found = (_from_cache(cache_dir, report.skipped) if hf_cache else []) + _from_folders(list(paths or []),
                                                                                          report.skipped)
    pairs, lonely = pair(found)
    existing = store.records(include_hidden=True)
    by_ref: dict[str, str] = {}
    for c in existing:
        by_ref.setdefault(_ref_key(c.chat), c.name)
        if c.base is not None:
            by_ref.setdefault(_ref_key(c.base), c.name)
    for b in lonely:
        if _ref_key(b.ref) in by_ref:
            report.known.append((b.ref.id, by_ref[_ref_key(b.ref)]))
            continue
        report.skipped.append((b.ref.id, "a Base without a matching Chat (not a candidate on its own; add it with "
                                         "`damoc registry add --chat CHAT --base ...`)"))
    taken = {c.name.lower() for c in existing}
    for chat, base in pairs:
        if _ref_key(chat.ref) in by_ref:
            report.known.append((chat.ref.id, by_ref[_ref_key(chat.ref)]))
            continue
        name = _safe_name(chat.label)
        stem, i = name, 2
        while name.lower() in taken:
            name = f"{stem}-{i}"
            i += 1
        taken.add(name.lower())
        arch = chat.facts.architecture or "unknown"
        report.added.append(Candidate(
            name=name, chat=chat.ref, base=base.ref if base else None, family=arch, source="scan",
            notes=f"found by scan in {'the HF cache' if chat.ref.kind == 'hub' else chat.folder.parent}",
            no_base_reason="" if base else "no matching Base found locally",
            chat_facts=chat.facts, base_facts=base.facts if base else None,
        ))
    if report.added and not dry_run:
        store.add_many(report.added)
    return report


def _ref_key(ref: ModelRef) -> str:
    return os.path.realpath(ref.id) if ref.kind == "folder" else ref.id.lower()
