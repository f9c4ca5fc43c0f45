"""The registry store: the ONLY code that touches TinyDB.

TinyDB is not safe for concurrent writers (msiemens/tinydb#537, #529), so every write is a transaction under a
`filelock.FileLock` on `<registry>.lock`, and the storage writes the whole file atomically (write, fsync, rename;
`damoc.fsutil`). Readers never need the lock: they see the old file or the new one, never half of one.

File layout (TinyDB JSON, one object per table): `meta` (schema_version), `candidates` (user, scan and zoo entries;
`Candidate.to_record()`), `hubfacts` (facts confirmed by `registry check --online`, keyed by hub id) and `hidden`
(built-in catalog names the user removed). The built-in catalog is never copied in: `list()` lays it under the
user's entries at read time.

A file that does not parse is reported, copied aside (`registry.json.corrupt-<hash>`) and never replaced silently:
every operation fails with the same message until the user fixes it or runs `damoc registry reset`.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from damoc.errors import DamocError, UnknownNameError
from damoc.fsutil import atomic_write_text, file_hash
from damoc.registry.models import Candidate, HubCheck, HubFacts, ModelFacts, check_name
from damoc.registry.storage import storage_error
from damoc.settings import Settings

SCHEMA_VERSION = 1
TABLES = ("meta", "candidates", "hubfacts", "hidden", "hubchecks")


class RegistryCorrupt(DamocError):
    """The registry file cannot be read; a copy was saved and nothing was overwritten."""


class RegistryBusy(DamocError):
    """Another process held the registry lock for longer than the timeout."""


class NameTaken(DamocError):
    """An entry with this name exists already."""


# -- migrations ---------------------------------------------------------------------------------------------------
# Ordered functions on the raw TinyDB dict, oldest first (the oterm `store/upgrades` pattern).

def _migrate_0_to_1(data: dict[str, Any]) -> dict[str, Any]:
    """v0 = a file from before the schema was versioned: entries in TinyDB's `_default` table with the zoo's flat
    keys (`name`, `chat_path`, `base_path`, `architecture`, `parameters`, `layers`). v1 = `candidates` records."""
    out: dict[str, Any] = {t: dict(data.get(t) or {}) for t in TABLES}
    n = len(out["candidates"])
    for doc in (data.get("_default") or {}).values():
        chat = doc.get("chat") or doc.get("chat_path")
        if not doc.get("name") or not chat:
            continue
        base = doc.get("base") or doc.get("base_path")
        n += 1
        out["candidates"][str(n)] = Candidate.from_record({
            "name": doc["name"], "chat": {"id": str(chat)} if isinstance(chat, str) else chat,
            "base": ({"id": str(base)} if isinstance(base, str) else base) if base else None,
            "family": doc.get("family") or doc.get("architecture") or "", "source": doc.get("source") or "user",
            "chat_facts": {k: doc[k] for k in ("architecture", "parameters", "layers") if k in doc} | {"origin": "zoo"},
            "added_at": doc.get("added_at"),
        }).to_record()
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _migrate_0_to_1}


# -- TinyDB storage -----------------------------------------------------------------------------------------------

def _storage_class() -> type:
    from tinydb.storages import Storage

    class AtomicJSONStorage(Storage):
        """TinyDB storage whose every write replaces the file atomically; reads reject anything unparsable."""

        def __init__(self, path: str, **_: Any) -> None:
            self.path = Path(path)

        def read(self) -> dict[str, Any] | None:
            return _parse(self.path)

        def write(self, data: dict[str, Any]) -> None:
            # validated before writing: what we write must be what _parse accepts on the next read
            for doc_id, doc in (data.get("candidates") or {}).items():
                why = candidate_problem(doc)
                if why:
                    raise DamocError(f"refusing to write registry entry {doc_id}: {why}",
                                     "nothing was written; this is a bug in the caller, please report it")
            text = json.dumps(data, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
            try:
                atomic_write_text(self.path, text)
            except OSError as e:
                raise storage_error(e, self.path, what="write the registry",
                                    needed=len(text.encode("utf-8"))) from None

        def close(self) -> None:
            pass

    return AtomicJSONStorage


# The types of the stored fields: a document that breaks them is reported with its entry and field, on load, and
# never reaches the code that reads it (a `"chat": 5` used to crash every command).
_FACT_TYPES: dict[str, tuple[type, ...]] = {
    "architecture": (str,), "architectures": (list,), "parameters": (int,), "layers": (int,), "hidden_size": (int,),
    "intermediate_size": (int,), "attention_heads": (int,), "kv_heads": (int,), "vocab_size": (int,),
    "dtype": (str,), "license": (str,), "gated": (bool,), "needs_remote_code": (bool,), "trust_remote_code": (bool,),
    "chat_template": (bool,), "size_bytes": (int,), "size_estimated": (bool,), "origin": (str,)}
_TEXT_FIELDS = ("family", "notes", "no_base_reason")
SOURCES = ("user", "scan", "zoo", "catalog")


def _ref_problem(value: Any, field: str, *, optional: bool) -> str:
    if value is None and optional:
        return ""
    if isinstance(value, str):
        return "" if value.strip() else f"{field} is empty"
    if not isinstance(value, dict):
        return f"{field} is {type(value).__name__}, expected an object with an id"
    if not isinstance(value.get("id"), str) or not value["id"].strip():
        return f"{field}.id is missing or not a string"
    if value.get("revision") is not None and not isinstance(value["revision"], str):
        return f"{field}.revision is not a string"
    return ""


def _facts_problem(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict):
        return f"{field} is {type(value).__name__}, expected an object"
    for key, types in _FACT_TYPES.items():
        v = value.get(key)
        if v is None:
            continue
        if not isinstance(v, types) or (types == (int,) and isinstance(v, bool)):
            return f"{field}.{key} is {type(v).__name__} ({str(v)[:40]!r}), expected {types[0].__name__}"
    return ""


def candidate_problem(doc: dict[str, Any]) -> str:
    """What is wrong with one stored candidate document ("" when nothing is): the field and why."""
    from damoc.registry.models import NAME_RE

    name = doc.get("name")
    if not isinstance(name, str):
        return "lacks a name" if name is None else f"name is {type(name).__name__}, expected a string"
    if not NAME_RE.match(name):
        return f"name {name[:60]!r} breaks the name rule"
    if "chat" not in doc:
        return "lacks a chat"
    why = _ref_problem(doc.get("chat"), "chat", optional=False) or _ref_problem(doc.get("base"), "base", optional=True)
    why = why or _facts_problem(doc.get("chat_facts"), "chat_facts") or _facts_problem(doc.get("base_facts"),
                                                                                       "base_facts")
    if why:
        return why
    for f in _TEXT_FIELDS:
        if doc.get(f) is not None and not isinstance(doc[f], str):
            return f"{f} is {type(doc[f]).__name__}, expected a string"
    if doc.get("source") is not None and doc["source"] not in SOURCES:
        return f"source {str(doc['source'])[:40]!r} is not one of {', '.join(SOURCES)}"
    if doc.get("added_at") is not None and (not isinstance(doc["added_at"], (int, float))
                                            or isinstance(doc["added_at"], bool)):
        return "added_at is not a number"
    for f in ("paper", "trust_remote_code"):
        if doc.get(f) is not None and not isinstance(doc[f], bool):
            return f"{f} is {type(doc[f]).__name__}, expected true or false"
    return ""


def _check(path: Path, data: dict[str, Any]) -> None:
    for table, docs in data.items():
        if not isinstance(docs, dict) or not all(isinstance(d, dict) for d in docs.values()):
            _corrupt(path, f"table {table!r} is not an object of documents")
    for doc_id, doc in (data.get("meta") or {}).items():
        v = doc.get("schema_version")
        if "schema_version" in doc and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            _corrupt(path, f"meta document {doc_id}: schema_version {str(v)[:40]!r} is not a whole number")
    for doc_id, doc in (data.get("candidates") or {}).items():
        why = candidate_problem(doc)
        if why:
            shown = doc.get("name") if isinstance(doc.get("name"), str) and len(doc["name"]) < 80 else None
            _corrupt(path, f"candidate document {doc_id}" + (f" ({shown!r})" if shown else "") + f" {why}")
    for doc_id, doc in (data.get("hubfacts") or {}).items():
        why = "" if isinstance(doc.get("id"), str) else "has no id string"
        why = why or _facts_problem(doc.get("facts"), "facts")
        if why:
            _corrupt(path, f"hubfacts document {doc_id} {why}")
    for doc_id, doc in (data.get("hidden") or {}).items():
        if not isinstance(doc.get("name"), str):
            _corrupt(path, f"hidden document {doc_id} has no name string")


def _parse(path: Path) -> dict[str, Any] | None:
    """The raw TinyDB dict, None for a missing file; a file that is not a well-formed registry (unparsable, empty,
    a wrong-schema document) is copied aside and reported, and never written over."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RegistryCorrupt(f"registry path {path} is a directory, not a file",
                              "move the directory away (damoc locate shows the registry path)") from None
    except OSError as e:
        raise storage_error(e, path, what="read the registry") from None
    if not raw.strip():
        # damoc never writes an empty registry (every write is whole and atomic): something else emptied it
        _corrupt(path, "the file is empty" if not raw else "the file holds only whitespace")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        _corrupt(path, f"not valid JSON: {e}" if not isinstance(e, RecursionError) else "nested too deeply")
    if not isinstance(data, dict):
        _corrupt(path, "top level is not a JSON object")
    _check(path, data)
    return data


def _corrupt(path: Path, reason: str) -> NoReturn:
    backup = path.with_name(f"{path.name}.corrupt-{file_hash(path, 8)}")
    try:
        if not backup.exists():
            shutil.copy2(path, backup)
        kept = f"a copy is saved as {backup.name}"
    except OSError as e:     # a read-only or full disk: say so, and still never touch the file
        kept = f"no copy could be saved ({e.strerror or e}); the file is left as it is"
    raise RegistryCorrupt(f"registry file {path} is corrupt ({reason}); {kept}",
                          "fix the file by hand, or start a fresh registry with `damoc registry reset` "
                          "(the copy keeps your entries; the built-in catalog is unaffected)")


def _version(data: dict[str, Any] | None) -> int:
    if not data:
        return SCHEMA_VERSION
    for doc in (data.get("meta") or {}).values():
        if "schema_version" in doc:
            return int(doc["schema_version"])
    return 0


def _norm(name: str) -> str:
    return name.strip().lower()


class RegistryStore:
    """Candidates = the built-in catalog (minus hidden names) + the user's own entries, assessed on this machine."""

    def __init__(self, settings: Settings, *, lock_timeout: float = 120.0, catalog_dir: Path | None = None) -> None:
        self.settings = settings
        self.path = Path(settings.registry_path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout = lock_timeout
        self.catalog_dir = catalog_dir

    # -- low level: the only TinyDB access --------------------------------------------------------------------
    def _ensure_current(self) -> None:
        """Check the schema; migrate an older file under the lock (after saving a copy)."""
        data = _parse(self.path)
        v = _version(data)
        if v > SCHEMA_VERSION:
            raise DamocError(f"registry file {self.path} has schema version {v}; this damoc reads up to "
                             f"{SCHEMA_VERSION}", "upgrade damoc (`pip install -U damoc`), or point DAMOC_HOME "
                             "elsewhere")
        if v < SCHEMA_VERSION:
            with self._lock():
                data = _parse(self.path)
                v = _version(data)
                if v < SCHEMA_VERSION and data is not None:
                    try:
                        shutil.copy2(self.path, self.path.with_name(f"{self.path.name}.v{v}.bak"))
                    except OSError as e:
                        raise storage_error(e, self.path.parent, what="back up the registry before migrating it in",
                                            needed=self.path.stat().st_size) from None
                    while v < SCHEMA_VERSION:
                        try:
                            data = MIGRATIONS[v](data)
                        except (KeyError, TypeError, ValueError, AttributeError) as e:
                            _corrupt(self.path, f"a schema-v{v} entry cannot be migrated ({type(e).__name__}: {e})")
                        v += 1
                    data["meta"] = {"1": {"schema_version": SCHEMA_VERSION}}
                    _check(self.path, data)
                    _storage_class()(str(self.path)).write(data)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
            lock.acquire()
        except Timeout:
            raise RegistryBusy(f"the registry is locked by another damoc process (waited {self.lock_timeout:.0f} s "
                               f"for {self.lock_path})", "wait for it to finish; if no damoc is running, delete "
                               "the lock file") from None
        except OSError as e:
            raise storage_error(e, self.lock_path, what="lock the registry at") from None
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[Any]:
        from tinydb import TinyDB

        self._ensure_current()
        if write:
            with self._lock():
                db = TinyDB(str(self.path), storage=_storage_class())
                try:
                    if not db.table("meta").all():
                        db.table("meta").insert({"schema_version": SCHEMA_VERSION})
                    yield db
                finally:
                    db.close()
        else:
            db = TinyDB(str(self.path), storage=_storage_class())
            try:
                yield db
            finally:
                db.close()

    # -- reading ------------------------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return _version(_parse(self.path))

    def _catalog(self) -> list[Candidate]:
        from damoc.registry.catalog import load_catalog

        return load_catalog(self.catalog_dir)

    def _state(self) -> tuple[list[Candidate], set[str], HubFacts]:
        with self._db() as db:
            own = [Candidate.from_record(d) for d in db.table("candidates").all()]
            hidden = {_norm(d["name"]) for d in db.table("hidden").all() if "name" in d}
            facts = {d["id"]: ModelFacts.from_dict(d.get("facts")) or ModelFacts() for d in db.table("hubfacts").all()
                     if "id" in d}
            checks = {}
            for d in db.table("hubchecks").all():
                hc = HubCheck.from_dict(d.get("check"))
                if hc is not None:           # an unreadable record is ignored: re-checking writes it again
                    checks[(hc.chat, hc.base)] = hc
        return own, hidden, HubFacts(facts, checks)

    def records(self, *, include_hidden: bool = False) -> list[Candidate]:
        """Declared entries (not assessed): catalog first, then the user's own in the order added."""
        own, hidden, _ = self._state()
        cat = [c for c in self._catalog() if include_hidden or _norm(c.name) not in hidden]
        return cat + sorted(own, key=lambda c: (c.added_at or 0, c.name))

    def hub_facts(self) -> HubFacts:
        """Facts confirmed on the hub, and (`.checks`) the pairs' capabilities checked there."""
        return self._state()[2]

    def list(self, *, family: str | None = None, source: str | None = None) -> list[Candidate]:
        """Every visible candidate, assessed on this machine (capability computed from local files)."""
        from damoc.registry.assess import assess

        own, hidden, hub = self._state()
        cands = [c for c in self._catalog() if _norm(c.name) not in hidden]
        cands += sorted(own, key=lambda c: (c.added_at or 0, c.name))
        if family:
            cands = [c for c in cands if c.family.lower() == family.lower()]
        if source:
            cands = [c for c in cands if c.source == source]
        return [assess(c, hub) for c in cands]

    def find(self, name: str) -> Candidate:
        """The declared entry named `name` (case-insensitive; a hub id or folder of a Chat also matches)."""
        cands = self.records()
        key = _norm(name)
        for c in cands:
            if _norm(c.name) == key:
                return c
        for c in cands:
            if c.chat.id == name or _norm(c.chat.id) == key:
                return c
        raise UnknownNameError("candidate", name, [c.name for c in cands])

    def get(self, name: str) -> Candidate:
        from damoc.registry.assess import assess

        c = self.find(name)
        return assess(c, self.hub_facts())

    def names(self) -> list[str]:
        return [c.name for c in self.records()]

    # -- writing ------------------------------------------------------------------------------------------------
    def add(self, candidate: Candidate, *, replace: bool = False) -> Candidate:
        """Register one entry (locked, atomic). A name already used raises NameTaken unless `replace`."""
        self.add_many([candidate], replace=replace)
        return candidate

    def add_many(self, candidates: Iterable[Candidate], *, replace: bool = False,
                 replace_sources: tuple[str, ...] = ()) -> list[Candidate]:
        """Register several entries in one transaction: all are checked first, then written in one file write
        (nothing half-written). `replace_sources` lets e.g. the zoo overwrite its own earlier entries."""
        from tinydb import Query

        cands = list(candidates)
        seen: set[str] = set()
        for c in cands:
            check_name(c.name)
            why = candidate_problem(c.to_record())     # validated before anything is written
            if why:
                raise DamocError(f"refusing to write registry entry {c.name!r}: {why}", "nothing was written")
            if _norm(c.name) in seen:
                raise NameTaken(f"name {c.name!r} given twice", "give every entry its own name")
            seen.add(_norm(c.name))
            if c.source == "catalog":
                raise DamocError(f"{c.name}: catalog entries are built in and cannot be added", "use source 'user'")
        catalog = {_norm(c.name) for c in self._catalog()}
        now = time.time()
        with self._db(write=True) as db:
            table = db.table("candidates")
            existing = {_norm(d["name"]): d for d in table.all()}
            for c in cands:
                key = _norm(c.name)
                if key in catalog:
                    raise NameTaken(f"{c.name!r} is a built-in catalog entry",
                                    "pick another name with --name (catalog entries can be hidden with remove)")
                old = existing.get(key)
                if old is not None and not (replace or old.get("source") in replace_sources):
                    raise NameTaken(f"a candidate named {old['name']!r} exists already",
                                    "pick another name with --name, or pass --replace to overwrite it")
            new_docs = []
            for c in cands:
                if c.added_at is None:
                    c.added_at = now
                key = _norm(c.name)
                if key in existing:   # one atomic write per replaced entry: readers see the old or the new one
                    table.upsert(c.to_record(), Query().name.test(lambda v, k=key: _norm(v) == k))
                else:
                    new_docs.append(c.to_record())
            if new_docs:
                table.insert_multiple(new_docs)   # one write for all new entries
        return cands

    def remove(self, name: str) -> str:
        """Remove a user entry, or hide a built-in catalog entry. Returns "removed" or "hidden"."""
        from tinydb import Query

        c = self.find(name)
        key = _norm(c.name)
        with self._db(write=True) as db:
            if c.source == "catalog":
                hidden = db.table("hidden")
                if not hidden.search(Query().name.test(lambda v: _norm(v) == key)):
                    hidden.insert({"name": c.name})
                return "hidden"
            n = db.table("candidates").remove(Query().name.test(lambda v: _norm(v) == key))
        if not n:   # removed by another process between find and the lock
            raise UnknownNameError("candidate", name, self.names())
        return "removed"

    def restore(self, name: str) -> None:
        """Show a hidden built-in catalog entry again."""
        from tinydb import Query

        names = [c.name for c in self.records(include_hidden=True) if c.source == "catalog"]
        key = _norm(name)
        if key not in {_norm(n) for n in names}:
            raise UnknownNameError("catalog entry", name, names)
        with self._db(write=True) as db:
            db.table("hidden").remove(Query().name.test(lambda v: _norm(v) == key))

    def set_hub_facts(self, facts: dict[str, ModelFacts]) -> None:
        """Store facts confirmed through the hub API, keyed by hub id (one transaction)."""
        from tinydb import Query

        if not facts:
            return
        with self._db(write=True) as db:
            table = db.table("hubfacts")
            for repo_id, f in facts.items():
                table.upsert({"id": repo_id, "facts": f.to_dict(), "checked_at": time.time()},
                             Query().id == repo_id)

    def set_hub_checks(self, checks: list[HubCheck]) -> None:
        """Store capabilities computed on the hub, one per (Chat ref, Base ref) (one transaction)."""
        from tinydb import Query

        if not checks:
            return
        with self._db(write=True) as db:
            table = db.table("hubchecks")
            for hc in checks:
                key = f"{hc.chat} | {hc.base}"
                table.upsert({"key": key, "check": hc.to_dict()}, Query().key == key)

    def reset(self) -> Path | None:
        """Move the current file aside (kept as a backup) and start an empty registry. Returns the backup path."""
        with self._lock():
            if not self.path.exists():
                return None
            backup = self.path.with_name(f"{self.path.name}.reset-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.move(str(self.path), backup)
            return backup
