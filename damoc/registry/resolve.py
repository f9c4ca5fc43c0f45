"""What the pipeline and the zoo call: resolve a name to local folders, register the demo zoo."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from damoc.errors import ConfigError, DamocError
from damoc.registry.models import Candidate, ModelFacts, ModelRef, ResolvedCandidate, human_bytes
from damoc.settings import Settings


def given_folder(ref: str | Path, *, setting: str) -> Path | None:
    """`ref` as a model folder when it is a path (it must hold config.json); None when it reads as a name.
    A path that does not exist is an error here, not a registry lookup: `./chat` is never a candidate's name."""
    text = str(ref)
    p = Path(text).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{setting}: {p} has no config.json, not a Hugging Face model folder",
                              "pass a folder written by save_pretrained, or a registry candidate name")
        return p.resolve()
    if text.startswith((".", "~", "/")) or "\\" in text or (p.parent != Path(".") and p.parent.is_dir()):
        raise ConfigError(f"{setting} {text!r}: no such folder", "check the path, or pass a registry candidate name")
    return None


def model_folder(settings: Settings, ref: str | Path, *, setting: str = "compress.model") -> Path:
    """The model folder a setting names: a folder as given, else a registry candidate's Chat folder. Errors name
    `setting` (a run config holds several model references); an unknown name's error keeps its did-you-mean."""
    folder = given_folder(ref, setting=setting)
    if folder is not None:
        return folder
    try:
        return Path(resolve_candidate(settings, str(ref)).chat_path)
    except DamocError as e:
        raise ConfigError(f"{setting}: {e.message}", e.hint) from e


def resolve_candidate(settings: Settings, name: str) -> ResolvedCandidate:
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
        trust_remote_code=c.trust_remote_code, parameters=c.chat_facts.parameters,
        revision=c.chat.revision, needs_remote_code=c.needs_remote_code,
    )


def new_candidate(chat: str, base: str | None = None, *, name: str | None = None, family: str | None = None,
                  chat_revision: str | None = None, base_revision: str | None = None, notes: str = "",
                  trust_remote_code: bool = False) -> Candidate:
    """A validated user entry from a Chat (and Base) given as folders or hub ids, as `damoc registry add` builds it:
    local models are read now (config.json, safetensors headers; a Chat and Base of different families are
    refused), hub ids are taken as they are (nothing is downloaded). Not yet stored: `RegistryStore.add` it."""
    from damoc.registry.assess import local_facts, locate
    from damoc.registry.models import check_name

    def facts(ref: ModelRef, role: str) -> ModelFacts | None:
        _, path, problem = locate(ref)
        if ref.kind == "folder" and path is None:
            raise DamocError(f"{role} {ref.id}: {problem}",
                             "point at the folder that holds config.json and the *.safetensors files")
        return local_facts(path) if path else None

    if name is not None:          # given, even empty: checked, never silently replaced by a derived one
        check_name(name)
    cref = ModelRef.parse(chat, chat_revision, role="Chat")
    bref = ModelRef.parse(base, base_revision, role="Base") if base else None
    if bref is not None and (bref.id, bref.revision) == (cref.id, cref.revision):
        raise DamocError(f"Chat and Base are the same model ({cref}): the task vector (Chat - Base) would be zero, "
                         "so sparse merging would add nothing", "give the Base the Chat was fine-tuned from, or "
                         "omit --base")
    cf = facts(cref, "Chat")
    bf = facts(bref, "Base") if bref else None
    if cf and bf and cf.architecture != bf.architecture:
        raise DamocError(f"Chat and Base are of different families: Chat {cref.id} is {cf.architecture}, "
                         f"Base {bref.id} is {bf.architecture}",   # type: ignore[union-attr]
                         "give the Base the Chat was fine-tuned from, or omit the Base")
    return Candidate(name=check_name(name if name is not None else default_name(cref)), chat=cref, base=bref,
                     family=family or (cf.architecture if cf else "") or "", source="user", notes=notes,
                     no_base_reason="" if bref else "none given", chat_facts=cf or ModelFacts(origin="none"),
                     base_facts=bf, trust_remote_code=bool(trust_remote_code))


def default_name(ref: ModelRef) -> str:
    """The folder or repo name; for `.../tiny/chat` the parent's (a bare `chat` or `base` says nothing)."""
    from damoc.registry.scan import BASE_MARKERS, CHAT_MARKERS, GENERIC, _safe_name, _tokens

    p = Path(ref.id)
    label = p.name
    if ref.kind == "folder" and set(_tokens(label)) <= CHAT_MARKERS | BASE_MARKERS | GENERIC:
        label = p.parent.name
    return _safe_name(label)


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, dict) else getattr(item, key, None)


def register_zoo(settings: Settings, zoo_candidates: Iterable[Any]) -> list[Candidate]:
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
