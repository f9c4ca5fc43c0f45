"""Local discovery and resolution: fake HF-cache folders, folder scans, the demo zoo, resolve_candidate."""
from __future__ import annotations

import pytest

from damoc.errors import DamocError
from damoc.registry import RegistryStore, register_zoo, resolve_candidate
from damoc.registry.scan import scan
from damoc.registry.store import NameTaken
from tests.helpers.fakes import write_cached, write_model


def test_catalog_pair_in_the_hf_cache_resolves_to_snapshots(settings, hf_cache):
    chat = write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True, seed=1)
    base = write_cached(hf_cache, "Qwen/Qwen2.5-0.5B", arch="qwen2", seed=2)
    c = RegistryStore(settings).get("Qwen2.5-0.5B")
    assert c.capability.chat_location == "hf-cache" and c.capability.base_location == "hf-cache"
    assert c.merge_supported and c.capability.download_bytes == 0
    assert c.chat_facts.origin == "files" and c.chat_facts.layers == 2      # files beat the catalog's 24
    assert c.chat_facts.license == "apache-2.0"                            # gaps still filled from the catalog
    r = resolve_candidate(settings, "qwen2.5-0.5b")
    assert (r.chat_path, r.base_path) == (str(chat), str(base))
    assert r.merge_supported and r.merge_reason == "" and r.architecture == "qwen2" and r.layers == 2


def test_chat_without_its_base_downloaded(settings, hf_cache):
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True)
    r = resolve_candidate(settings, "Qwen2.5-0.5B")
    assert r.base_path is None and not r.merge_supported
    assert "Base (W_pre) Qwen/Qwen2.5-0.5B not downloaded" in r.merge_reason
    assert "damoc registry pull Qwen2.5-0.5B --base-only" in r.merge_reason
    c = RegistryStore(settings).get("Qwen2.5-0.5B")
    assert c.capability.state == "not_local" and "Base not downloaded" in c.merge_reason


def test_not_local_tells_the_user_to_pull(settings, hf_cache):
    with pytest.raises(DamocError) as e:
        resolve_candidate(settings, "Qwen2.5-7B")
    assert "not in the local Hugging Face cache" in e.value.message
    assert e.value.hint.startswith("damoc registry pull Qwen2.5-7B")


def test_partial_download_is_not_local(settings, hf_cache):
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True, complete=False)
    c = RegistryStore(settings).get("Qwen2.5-0.5B")
    assert c.capability.chat_location == "hf-cache-partial" and not c.capability.local
    with pytest.raises(DamocError, match="partly downloaded"):
        resolve_candidate(settings, "Qwen2.5-0.5B")


def test_no_base_model_resolves_without_merge(settings, hf_cache):
    snap = write_cached(hf_cache, "mistralai/Ministral-8B-Instruct-2410", arch="mistral", chat=True)
    r = resolve_candidate(settings, "Ministral-8B-Instruct-2410")
    assert r.chat_path == str(snap) and r.base_path is None and not r.merge_supported
    assert r.merge_reason.startswith("pruning skipped: no Base (W_pre)")


def test_incompatible_base_in_cache(settings, hf_cache):
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True)
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B", arch="qwen2", layers=3)
    r = resolve_candidate(settings, "Qwen2.5-0.5B")
    assert r.base_path is None and "Base incompatible (Chat has 2 layers, Base has 3)" in r.merge_reason


def _zoo_items(root):
    items = []
    for name, arch, base in (("zoo-llama", "llama", True), ("zoo-qwen", "qwen2", True), ("zoo-mistral", "mistral",
                                                                                         False)):
        chat = write_model(root / name / "chat", arch=arch, chat=True, seed=1)
        b = write_model(root / name / "base", arch=arch, seed=2) if base else None
        items.append({"name": name, "architecture": arch, "parameters": 1000, "layers": 2, "chat_path": str(chat),
                      "base_path": str(b) if b else None})
    return items


def test_register_zoo_is_idempotent_and_flags_real_capability(settings, tmp_path):
    items = _zoo_items(tmp_path / "zoo")
    register_zoo(settings, items)
    register_zoo(settings, items)
    zoo = {c.name: c for c in RegistryStore(settings).list(source="zoo")}
    assert sorted(zoo) == ["zoo-llama", "zoo-mistral", "zoo-qwen"]
    for it in items:
        c = zoo[it["name"]]
        assert c.merge_supported == bool(it["base_path"]) and c.capability.chat_location == "zoo"
    assert "no Base" in zoo["zoo-mistral"].merge_reason
    # a rebuilt zoo whose Base no longer matches is flagged by what is on disk, not by what the zoo says
    write_model(tmp_path / "zoo" / "zoo-qwen" / "base", arch="qwen2", seed=2, inter=48)
    assert "Base incompatible" in RegistryStore(settings).get("zoo-qwen").merge_reason


def test_register_zoo_never_overwrites_a_user_entry(settings, tmp_path):
    items = _zoo_items(tmp_path / "zoo")
    from damoc.registry import Candidate, ModelRef

    RegistryStore(settings).add(Candidate(name="zoo-llama", chat=ModelRef(items[0]["chat_path"])))
    with pytest.raises(NameTaken):
        register_zoo(settings, items)


def test_register_zoo_rejects_a_missing_folder(settings, tmp_path):
    with pytest.raises(DamocError, match="no config.json"):
        register_zoo(settings, [{"name": "z", "chat_path": str(tmp_path / "gone"), "base_path": None}])


def test_real_demo_zoo_registers_with_real_capability(settings, test_zoo):
    register_zoo(settings, test_zoo)
    by = {c.name: c for c in RegistryStore(settings).list(source="zoo")}
    for z in test_zoo:
        assert by[z.name].merge_supported == bool(z.base_path), by[z.name].merge_reason
        assert by[z.name].chat_facts.architecture == z.architecture
        r = resolve_candidate(settings, z.name)
        assert r.chat_path == str(z.chat_path) or r.chat_path == str(z.chat_path.resolve())


def test_scan_pairs_cache_and_folders(settings, hf_cache, tmp_path):
    write_cached(hf_cache, "acme/Tiny-7B-Instruct", chat=True, seed=1)
    write_cached(hf_cache, "acme/Tiny-7B", seed=2)
    write_cached(hf_cache, "other/Gem-2b-it", arch="gemma2", chat=True)
    write_cached(hf_cache, "other/Gem-2b", arch="gemma2", layers=3)          # config disagrees: not a pair
    write_cached(hf_cache, "solo/OnlyChat-Chat", chat=True)
    write_cached(hf_cache, "Qwen/Qwen2.5-0.5B-Instruct", arch="qwen2", chat=True)   # the catalog has it
    write_cached(hf_cache, "half/Partial-Instruct", chat=True, complete=False)
    write_model(tmp_path / "models" / "pairx" / "chat", arch="mistral", chat=True)
    write_model(tmp_path / "models" / "pairx" / "base", arch="mistral", seed=3)
    (tmp_path / "nothing").mkdir()
    store = RegistryStore(settings)
    rep = scan(store, [tmp_path / "models", tmp_path / "nothing"])
    added = {c.name: c for c in rep.added}
    assert set(added) == {"Tiny-7B-Instruct", "Gem-2b-it", "OnlyChat-Chat", "pairx-chat"}
    assert added["Tiny-7B-Instruct"].base.id == "acme/Tiny-7B"
    assert added["Gem-2b-it"].base is None
    assert added["pairx-chat"].base.id == str(tmp_path / "models" / "pairx" / "base")
    assert ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B") in rep.known
    skipped = dict(rep.skipped)
    assert "not (fully) downloaded" in skipped["half/Partial-Instruct"]
    assert "Base without a matching Chat" in skipped["other/Gem-2b"]
    assert "no model folder" in skipped[str(tmp_path / "nothing")]
    listed = {c.name: c for c in store.list(source="scan")}
    assert listed["Tiny-7B-Instruct"].merge_supported and listed["pairx-chat"].merge_supported
    assert listed["Tiny-7B-Instruct"].capability.chat_location == "hf-cache"
    # a second scan finds nothing new
    again = scan(store, [tmp_path / "models"])
    assert not again.added and len(again.known) >= 5


def test_scan_dry_run_writes_nothing(settings, hf_cache):
    write_cached(hf_cache, "acme/Tiny-Instruct", chat=True)
    rep = scan(RegistryStore(settings), [], dry_run=True)
    assert [c.name for c in rep.added] == ["Tiny-Instruct"]
    assert not settings.registry_path.exists()
