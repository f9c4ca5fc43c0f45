"""Typed registry entries: a candidate is a Chat model and, optionally, its Base (W_pre), each a hub id or a folder.

What is *declared* (names, refs, catalog facts) lives here; what is *computed* from files (capability, facts read
from config.json and safetensors headers) is filled in by `damoc.registry.capability` and never typed in.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from damoc.errors import DamocError

Source = Literal["catalog", "user", "scan", "zoo"]
Location = Literal["hub", "hf-cache", "hf-cache-partial", "folder", "zoo", "missing"]
CapabilityState = Literal["supported", "no_base", "base_incompatible", "not_local", "unreadable"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")

# bytes per parameter of each safetensors / torch dtype name (used for size estimates and header sums)
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1, "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


NAME_RULE = "letters, digits and . _ + - (at most 100 characters, starting with a letter or digit)"


def check_name(name: str) -> str:
    """The one candidate-name rule, applied wherever a name enters (registry add, scan, import, the zoo, the
    registry file on load, folders given as candidates): printable ASCII without separators, quotes, spaces or
    line breaks, so a name can appear in a path, a shell line or a YAML value without meaning anything there."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 120 else \
            (repr(name[:120]) + "...") if isinstance(name, str) else f"of type {type(name).__name__}"
        raise DamocError(f"invalid candidate name {shown}", f"use {NAME_RULE}")
    return name


@dataclass(frozen=True)
class ModelRef:
    """Where one model comes from: a Hugging Face hub id (+ revision) or a local folder (absolute path)."""

    id: str
    revision: str | None = None

    @property
    def kind(self) -> Literal["hub", "folder"]:
        return "folder" if os.path.isabs(self.id) else "hub"

    @classmethod
    def parse(cls, value: str, revision: str | None = None, *, role: str = "model") -> "ModelRef":
        """A folder (absolute, relative or ~ path that exists, or that looks like a path) or an `org/name` hub id."""
        text = str(value).strip()
        if not text:
            raise DamocError(f"empty {role} reference", "give a folder or a hub id like Qwen/Qwen2.5-0.5B-Instruct")
        looks_like_path = text.startswith(("/", "./", "../", "~")) or text in (".", "..")
        try:
            p = Path(text).expanduser()
            is_file, exists, is_dir = p.is_file(), p.exists(), p.is_dir()
        except (OSError, ValueError) as e:       # a NUL byte, a name too long for the file system
            raise DamocError(f"{role} {text[:200]!r} is not a usable path ({e})",
                             "give a model folder that holds config.json, or a hub id") from None
        if is_file:
            raise DamocError(f"{role} {text!r} is a file, not a model folder",
                             f"give the folder that holds it: {p.resolve().parent}")
        if looks_like_path or (exists and not HUB_ID_RE.match(text)) or is_dir:
            return cls(str(p.resolve()), None)
        if HUB_ID_RE.match(text):
            return cls(text, revision or None)
        raise DamocError(f"{role} {text!r} is neither an existing folder nor a hub id (org/name)",
                         "give a model folder that holds config.json, or a hub id like Qwen/Qwen2.5-0.5B-Instruct")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "revision": self.revision}

    @classmethod
    def from_dict(cls, d: Any) -> "ModelRef":
        if isinstance(d, str):
            return cls(d, None)
        return cls(str(d["id"]), d.get("revision") or None)

    def __str__(self) -> str:
        return self.id + (f"@{self.revision}" if self.revision else "")


@dataclass
class ModelFacts:
    """Known facts about one model. `origin` says where they come from: "files" (read from config.json and
    safetensors headers), "hub" (confirmed through the hub API), "catalog" (typed in the built-in catalog and not yet
    confirmed), "zoo" (reported by the demo-zoo builder)."""

    architecture: str | None = None          # config.json model_type, e.g. "llama"
    architectures: list[str] = field(default_factory=list)
    parameters: int | None = None
    layers: int | None = None
    hidden_size: int | None = None
    intermediate_size: int | None = None
    attention_heads: int | None = None
    kv_heads: int | None = None
    vocab_size: int | None = None
    dtype: str | None = None
    license: str | None = None
    gated: bool | None = None
    # config.json declares its own model code (`auto_map`): a fact, shown; running that code needs the user's
    # explicit opt-in for the candidate (`Candidate.trust_remote_code`), never this
    needs_remote_code: bool | None = None
    chat_template: bool | None = None
    size_bytes: int | None = None            # on disk when local, expected download otherwise
    size_estimated: bool = False             # True when size_bytes = parameters x dtype bytes
    origin: str = "catalog"

    @property
    def trust_remote_code(self) -> bool | None:
        """The fact's former name (read-only): it never meant that the code is trusted."""
        return self.needs_remote_code

    def merged_over(self, older: "ModelFacts | None") -> "ModelFacts":
        """These facts, with gaps filled from `older` (files beat the hub, the hub beats the catalog)."""
        if older is None:
            return self
        out = dataclasses.replace(self)
        for f in dataclasses.fields(self):
            if f.name in ("origin", "size_estimated"):
                continue
            mine = getattr(self, f.name)
            if mine in (None, []):
                setattr(out, f.name, getattr(older, f.name))
                if f.name == "size_bytes":
                    out.size_estimated = older.size_estimated
        return out

    def estimated_size(self) -> int | None:
        if self.size_bytes:
            return self.size_bytes
        if self.parameters:
            return int(self.parameters * DTYPE_BYTES.get(self.dtype or "bfloat16", 2))
        return None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ModelFacts | None":
        if not d:
            return None
        names = {f.name for f in dataclasses.fields(cls)} | {"trust_remote_code"}
        return cls(**{k: v for k, v in d.items() if k in names})


def _accept_former_name(cls: type[ModelFacts]) -> None:
    """`ModelFacts(trust_remote_code=...)` (the catalog's TOML key, registry files and callers from before the
    fact was renamed) sets `needs_remote_code`."""
    init = cls.__init__

    def __init__(self: ModelFacts, *args: Any, trust_remote_code: bool | None = None, **kw: Any) -> None:
        init(self, *args, **kw)
        if trust_remote_code is not None and self.needs_remote_code is None:
            self.needs_remote_code = bool(trust_remote_code)

    cls.__init__ = __init__  # type: ignore[method-assign]


_accept_former_name(ModelFacts)


@dataclass
class HubCheck:
    """The sparse-merge capability of a pair computed on the hub (`damoc registry check --online`): both config.json
    files and every safetensors header read with range requests, no weights downloaded, by the same rule as for
    local files (`capability.compare_headers`). Kept per (Chat ref, Base ref); the local files win once present."""

    chat: str                                # the refs as written (`id@revision`)
    base: str
    state: CapabilityState                   # supported | base_incompatible | unreadable
    merge_supported: bool
    merge_reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)   # the mismatching tensor and shapes
    notes: list[str] = field(default_factory=list)
    checked_at: float | None = None

    def describe(self) -> str:
        if self.merge_supported:
            n = self.detail.get("layer_tensors")
            return "checked on the hub: sparse merging supported" + (f" ({n} layer tensors match)" if n else "")
        return "checked on the hub: " + self.merge_reason.removeprefix("pruning skipped: ")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "HubCheck | None":
        if not isinstance(d, dict):
            return None
        try:
            return cls(chat=str(d["chat"]), base=str(d["base"]), state=d["state"],
                       merge_supported=bool(d["merge_supported"]), merge_reason=str(d.get("merge_reason") or ""),
                       detail=dict(d.get("detail") or {}), notes=[str(n) for n in d.get("notes") or []],
                       checked_at=d.get("checked_at"))
        except (KeyError, TypeError, ValueError):
            return None


class HubFacts(dict):  # type: ignore[type-arg]
    """Facts confirmed on the hub, hub id -> ModelFacts; `checks` holds the pairs' hub-checked capabilities,
    (Chat ref, Base ref) -> HubCheck. One object, so every `assess(c, store.hub_facts())` sees both."""

    def __init__(self, facts: dict[str, ModelFacts] | None = None,
                 checks: dict[tuple[str, str], HubCheck] | None = None) -> None:
        super().__init__(facts or {})
        self.checks: dict[tuple[str, str], HubCheck] = dict(checks or {})


@dataclass
class Capability:
    """Computed from local files only (config.json + safetensors headers; no weights loaded, no download)."""

    state: CapabilityState
    merge_supported: bool
    merge_reason: str = ""                   # why not, when merge_supported is False
    chat_location: Location = "missing"
    base_location: Location | None = None
    chat_path: str | None = None             # local folder (HF cache snapshot or folder) when present
    base_path: str | None = None
    download_bytes: int | None = None        # to make Chat (and the declared Base) local; 0 when local
    download_estimated: bool = False
    detail: dict[str, Any] = field(default_factory=dict)   # the mismatching tensor and shapes, etc.
    notes: list[str] = field(default_factory=list)
    hub_check: HubCheck | None = None        # computed on the hub for a pair not (all) local; files win once local

    @property
    def local(self) -> bool:
        return self.chat_path is not None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["local"] = self.local
        return d


@dataclass
class Candidate:
    """One registry entry. `chat_facts`/`base_facts` hold what is known (catalog or files); `capability` is filled by
    the store when the entry is listed (computed, never stored as truth)."""

    name: str
    chat: ModelRef
    base: ModelRef | None = None
    family: str = ""
    source: Source = "user"
    notes: str = ""
    no_base_reason: str = ""                 # catalog: "no Base model released"
    paper: bool = False                      # one of the DaMoC paper's eight candidates
    chat_facts: ModelFacts = field(default_factory=ModelFacts)
    base_facts: ModelFacts | None = None
    added_at: float | None = None
    capability: Capability | None = None
    # the user's explicit opt-in (`registry add --trust-remote-code`): run this candidate's own model code
    trust_remote_code: bool = False

    @property
    def needs_remote_code(self) -> bool:
        return bool(self.chat_facts.needs_remote_code or (self.base_facts and self.base_facts.needs_remote_code))

    @property
    def unchecked(self) -> list[str]:
        """Hub ids of this entry that nothing has confirmed yet (added by hand, never seen on the hub nor on this
        machine): they may not exist. `damoc registry check --online NAME` confirms them."""
        out = []
        for ref, facts in ((self.chat, self.chat_facts), (self.base, self.base_facts)):
            if ref is not None and ref.kind == "hub" and (facts is None or facts.origin == "none"):
                out.append(ref.id)
        return out

    # -- convenience -------------------------------------------------------------------------------
    @property
    def merge_supported(self) -> bool:
        return bool(self.capability and self.capability.merge_supported)

    @property
    def merge_reason(self) -> str:
        return self.capability.merge_reason if self.capability else "not assessed"

    @property
    def architecture(self) -> str | None:
        return self.chat_facts.architecture

    @property
    def layers(self) -> int | None:
        return self.chat_facts.layers

    @property
    def parameters(self) -> int | None:
        return self.chat_facts.parameters

    # -- (de)serialisation ---------------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """What the store keeps (declared facts only; never the computed capability)."""
        return {
            "name": self.name, "chat": self.chat.to_dict(), "base": self.base.to_dict() if self.base else None,
            "family": self.family, "source": self.source, "notes": self.notes, "no_base_reason": self.no_base_reason,
            "paper": self.paper, "chat_facts": self.chat_facts.to_dict(),
            "base_facts": self.base_facts.to_dict() if self.base_facts else None, "added_at": self.added_at,
            "trust_remote_code": self.trust_remote_code,
        }

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> "Candidate":
        return cls(
            name=str(d["name"]), chat=ModelRef.from_dict(d["chat"]),
            base=ModelRef.from_dict(d["base"]) if d.get("base") else None,
            family=str(d.get("family") or ""), source=d.get("source") or "user", notes=str(d.get("notes") or ""),
            no_base_reason=str(d.get("no_base_reason") or ""), paper=bool(d.get("paper")),
            chat_facts=ModelFacts.from_dict(d.get("chat_facts")) or ModelFacts(),
            base_facts=ModelFacts.from_dict(d.get("base_facts")), added_at=d.get("added_at"),
            trust_remote_code=d.get("trust_remote_code") is True,
        )

    def summary(self) -> dict[str, Any]:
        """The flat view `damoc registry list --json` prints (stable keys, see docs/registry.md)."""
        cap = self.capability
        f = self.chat_facts
        return {
            "name": self.name,
            "family": self.family,
            "source": self.source,
            "paper": self.paper,
            "chat": self.chat.id,
            "chat_revision": self.chat.revision,
            "base": self.base.id if self.base else None,
            "base_revision": self.base.revision if self.base else None,
            "merge_supported": self.merge_supported,
            "merge_reason": self.merge_reason if not self.merge_supported else "",
            "state": cap.state if cap else None,
            "local": bool(cap and cap.local),
            "chat_location": cap.chat_location if cap else None,
            "base_location": cap.base_location if cap else None,
            "chat_path": cap.chat_path if cap else None,
            "base_path": cap.base_path if cap else None,
            "download_bytes": cap.download_bytes if cap else None,
            "architecture": f.architecture,
            "parameters": f.parameters,
            "layers": f.layers,
            "hidden_size": f.hidden_size,
            "vocab_size": f.vocab_size,
            "dtype": f.dtype,
            "license": f.license,
            "gated": f.gated,
            "needs_remote_code": self.needs_remote_code,
            "trust_remote_code": self.trust_remote_code,
            "chat_template": f.chat_template,
            "size_bytes": (f.size_bytes or 0) + ((self.base_facts.size_bytes or 0) if self.base_facts else 0) or None,
            "facts_from": f.origin,
            "unchecked": self.unchecked,
            "hub_check": cap.hub_check.to_dict() if cap and cap.hub_check else None,
            "no_base_reason": self.no_base_reason,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class ResolvedCandidate:
    """A candidate ready to run: local folders only. `base_path` is set only when sparse merging is supported."""

    name: str
    chat_path: str
    base_path: str | None
    architecture: str | None
    layers: int | None
    merge_supported: bool
    merge_reason: str
    trust_remote_code: bool                  # the user opted in (never implied by needs_remote_code)
    parameters: int | None = None
    revision: str | None = None
    needs_remote_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def human_bytes(n: int | float | None, *, approx: bool = False) -> str:
    """The one size format (CLI, app, pre-flight): decimal units, three significant digits at most (`540 MB`,
    `1.4 GB`, `15.7 GB`), `≈` for an estimate."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 999.5 or unit == "TB":
            text = f"{n:.0f} {unit}" if unit in ("B", "KB") or abs(n) >= 99.95 else f"{n:.1f} {unit}"
            return ("≈" if approx else "") + text
        n /= 1000
    return str(n)  # pragma: no cover


def human_count(n: int | None) -> str:
    if not n:
        return "?"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit}" if n / div < 10 else f"{n / div:.1f}{unit}"
    return str(n)
