"""The TinyDB store: catalog overlay, add/get/remove, corrupt files, schema migrations, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest

from damoc.errors import DamocError, UnknownNameError
from damoc.registry import Candidate, ModelRef, RegistryStore
from damoc.registry.store import SCHEMA_VERSION, NameTaken, RegistryCorrupt
from damoc.settings import Settings
from tests.helpers.fakes import write_model

PAPER = ["Llama-3.1-8B", "Qwen2.5-7B", "gemma-2-9b", "glm-4-9b", "Ministral-8B-Instruct-2410",
         "Phi-3-small-8k-instruct", "Yi-1.5-9B", "internlm2_5-7b"]


def _cand(name, chat, base=None, **kw):
    return Candidate(name=name, chat=ModelRef.parse(str(chat)), base=ModelRef.parse(str(base)) if base else None,
                     **kw)


def test_fresh_install_lists_the_catalog_without_writing(settings):
    store = RegistryStore(settings)
    cands = store.list()
    names = [c.name for c in cands]
    assert names[:8] == [n for n in names if n in PAPER] and set(PAPER) <= set(names)
    assert not settings.registry_path.exists()          # the catalog is not copied into the user's file
    by = {c.name: c for c in cands}
    for n in ("Ministral-8B-Instruct-2410", "Phi-3-small-8k-instruct"):
        c = by[n]
        assert c.base is None and not c.merge_supported
        assert c.merge_reason.startswith("pruning skipped: no Base (W_pre)")
    llama = by["Llama-3.1-8B"]
    assert llama.chat.id == "meta-llama/Llama-3.1-8B-Instruct" and llama.base.id == "meta-llama/Llama-3.1-8B"
    assert llama.chat_facts.gated and llama.chat_facts.origin == "catalog"
    assert llama.capability.state == "not_local" and "download needed" in llama.merge_reason
    assert by["glm-4-9b"].chat_facts.trust_remote_code and by["internlm2_5-7b"].chat_facts.trust_remote_code


def test_add_get_remove_user_entry(settings, tmp_path):
    write_model(tmp_path / "c", chat=True, seed=1)
    write_model(tmp_path / "b", seed=2)
    store = RegistryStore(settings)
    store.add(_cand("mine", tmp_path / "c", tmp_path / "b"))
    got = store.get("MINE")                                 # names are case-insensitive
    assert got.source == "user" and got.merge_supported and got.capability.chat_location == "folder"
    assert got.chat_facts.parameters and got.chat_facts.origin == "files"
    with pytest.raises(NameTaken):
        store.add(_cand("Mine", tmp_path / "c"))
    store.add(_cand("mine", tmp_path / "c"), replace=True)
    assert store.get("mine").base is None and not store.get("mine").merge_supported
    assert store.remove("mine") == "removed"
    with pytest.raises(UnknownNameError):
        store.get("mine")


def test_unknown_name_suggests_close_ones(settings):
    with pytest.raises(UnknownNameError) as e:
        RegistryStore(settings).get("qwen2.5-7")
    assert "Qwen2.5-7B" in e.value.suggestions and "did you mean" in e.value.hint


def test_lookup_by_chat_hub_id(settings):
    assert RegistryStore(settings).get("Qwen/Qwen2.5-7B-Instruct").name == "Qwen2.5-7B"


def test_catalog_names_are_reserved_and_can_be_hidden_and_restored(settings, tmp_path):
    write_model(tmp_path / "c")
    store = RegistryStore(settings)
    with pytest.raises(NameTaken, match="built-in"):
        store.add(_cand("qwen2.5-7b", tmp_path / "c"))
    assert store.remove("Yi-1.5-9B") == "hidden"
    assert "Yi-1.5-9B" not in [c.name for c in store.list()]
    store.restore("yi-1.5-9b")
    assert "Yi-1.5-9B" in [c.name for c in store.list()]


def test_file_is_versioned_json_with_tables(settings, tmp_path):
    write_model(tmp_path / "c")
    RegistryStore(settings).add(_cand("x", tmp_path / "c"))
    data = json.loads(settings.registry_path.read_text())
    assert list(data["meta"].values()) == [{"schema_version": SCHEMA_VERSION}]
    assert [d["name"] for d in data["candidates"].values()] == ["x"]
    assert "capability" not in next(iter(data["candidates"].values()))   # computed, never stored


def test_corrupt_file_is_backed_up_reported_and_never_replaced(settings, tmp_path):
    write_model(tmp_path / "c")
    store = RegistryStore(settings)
    store.add(_cand("x", tmp_path / "c"))
    broken = settings.registry_path.read_text()[:-40]
    settings.registry_path.write_text(broken)
    for op in (store.list, lambda: store.add(_cand("y", tmp_path / "c")), lambda: store.remove("x")):
        with pytest.raises(RegistryCorrupt) as e:
            op()
        assert "corrupt" in e.value.message and "damoc registry reset" in e.value.hint
    assert settings.registry_path.read_text() == broken            # untouched
    backups = list(settings.registry_path.parent.glob("registry.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == broken
    backup = store.reset()
    assert backup.read_text() == broken and store.list()            # fresh, catalog still there


def test_structurally_wrong_file_is_corrupt_too(settings):
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text(json.dumps({"candidates": {"1": {"chat": {"id": "a/b"}}}}))
    with pytest.raises(RegistryCorrupt, match="lacks a name"):
        RegistryStore(settings).list()


def test_newer_schema_is_refused(settings):
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text(json.dumps({"meta": {"1": {"schema_version": SCHEMA_VERSION + 1}}}))
    with pytest.raises(DamocError, match="schema version") as e:
        RegistryStore(settings).list()
    assert "upgrade damoc" in e.value.hint


def test_unversioned_file_is_migrated_with_a_backup(settings, tmp_path):
    write_model(tmp_path / "c", chat=True, seed=1)
    write_model(tmp_path / "b", seed=2)
    old = {"_default": {"1": {"name": "old-pair", "chat_path": str(tmp_path / "c"), "base_path": str(tmp_path / "b"),
                              "architecture": "llama", "layers": 2}}}
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text(json.dumps(old))
    store = RegistryStore(settings)
    c = store.get("old-pair")
    assert c.chat.id == str(tmp_path / "c") and c.merge_supported
    assert store.schema_version == SCHEMA_VERSION
    assert json.loads((settings.registry_path.parent / "registry.json.v0.bak").read_text()) == old


def _adder(home: str, chat: str, p: int) -> None:
    os.environ["DAMOC_HOME"] = home
    store = RegistryStore(Settings.load())
    for i in range(5):
        store.add(Candidate(name=f"c{p}-{i}", chat=ModelRef(chat)))


def test_concurrent_writers_lose_nothing(settings, tmp_path):
    write_model(tmp_path / "c")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_adder, args=(str(settings.home), str(tmp_path / "c"), p)) for p in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    own = [c.name for c in RegistryStore(settings).list(source="user")]
    assert sorted(own) == sorted(f"c{p}-{i}" for p in range(6) for i in range(5))


def test_import_is_all_or_nothing(settings, tmp_path):
    write_model(tmp_path / "c")
    store = RegistryStore(settings)
    store.add(_cand("taken", tmp_path / "c"))
    with pytest.raises(NameTaken):
        store.add_many([_cand("new-1", tmp_path / "c"), _cand("taken", tmp_path / "c")])
    assert "new-1" not in store.names()
    with pytest.raises(DamocError, match="invalid candidate name"):
        store.add_many([_cand("ok", tmp_path / "c"), _cand("bad name!", tmp_path / "c")])
    assert "ok" not in store.names()
