"""The hub, only when asked: offline and timeout messages, online facts, pull with progress/resume, gated repos.

No test reaches the internet: the "hub" is a loopback server (HF_ENDPOINT) built in test_registry_fakes.
"""
from __future__ import annotations

import time

import pytest

from damoc.events import ListReporter, StageFinished, StageProgress
from damoc.registry import Candidate, ModelRef, RegistryStore, resolve_candidate
from damoc.registry.hub import HubError, check_online, pull, remote_model, select_files
from tests.helpers.fakes import FakeHub, SilentServer, model_files


@pytest.fixture
def online(hf_cache, tmp_path, monkeypatch):
    """HF offline switched off, a private HF cache, no token."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # huggingface_hub freezes HF_HUB_OFFLINE when first imported (conftest sets it for the whole session)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    return hf_cache


def test_offline_mode_gives_a_message_at_once(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(HubError) as e:
        pull(settings, "Qwen2.5-0.5B")
    assert "offline mode (HF_HUB_OFFLINE=1 is set)" in e.value.message and "damoc registry add" in e.value.hint
    with pytest.raises(HubError, match="offline"):
        check_online(RegistryStore(settings), [RegistryStore(settings).get("Qwen2.5-0.5B")])
    assert time.monotonic() - t0 < 2


def test_silent_hub_times_out_with_a_message(settings, online, monkeypatch):
    with SilentServer() as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        t0 = time.monotonic()
        with pytest.raises(HubError) as e:
            remote_model(ModelRef("Qwen/Qwen2.5-0.5B-Instruct"), timeout=1.0)
        took = time.monotonic() - t0
    assert "no answer from" in e.value.message and "timeout 1 s" in e.value.message
    assert "HF_HUB_OFFLINE=1" in e.value.hint
    assert took < 15


def test_unreachable_hub(settings, online, monkeypatch):
    with SilentServer() as srv:
        url = srv.url
    monkeypatch.setenv("HF_ENDPOINT", url)      # closed port: connection refused
    with pytest.raises(HubError, match="cannot reach"):
        remote_model(ModelRef("a/b"), timeout=2.0)


def test_select_files_keeps_what_a_model_needs():
    names = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
             "model.safetensors.index.json", "consolidated.safetensors", "pytorch_model.bin", "original/consolidated.00.pth",
             "tokenizer.json", "tokenizer.model", "README.md", ".gitattributes", "model.gguf", "modeling_x.py"]
    assert select_files(names) == ["README.md", "config.json", "model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                                   "modeling_x.py", "tokenizer.json", "tokenizer.model"]
    assert select_files(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]


def test_check_online_confirms_facts_and_keeps_them(settings, online, monkeypatch):
    chat = model_files(arch="qwen2", chat=True, seed=1)
    base = model_files(arch="qwen2", seed=2)
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct": chat, "Qwen/Qwen2.5-0.5B": base},
                 config={"Qwen/Qwen2.5-0.5B-Instruct": {"model_type": "qwen2"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        store = RegistryStore(settings)
        res = check_online(store, [store.get("Qwen2.5-0.5B")], timeout=5)
    assert res[0].ok and set(res[0].facts) == {"chat", "base"}
    c = RegistryStore(settings).get("Qwen2.5-0.5B")
    assert c.chat_facts.size_bytes == sum(len(b) for b in chat.values())     # real sizes replace the estimate
    assert not c.chat_facts.size_estimated and c.chat_facts.origin == "hub" and c.chat_facts.gated is False
    assert c.capability.download_bytes == sum(len(b) for b in chat.values()) + sum(len(b) for b in base.values())


def test_pull_downloads_with_progress_and_then_resolves(settings, online, monkeypatch):
    chat = model_files(arch="qwen2", chat=True, seed=1)
    base = model_files(arch="qwen2", seed=2)
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct": chat, "Qwen/Qwen2.5-0.5B": base}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        rep = ListReporter()
        paths = pull(settings, "Qwen2.5-0.5B", reporter=rep, timeout=5)
        # a second pull finds everything cached and asks the hub nothing
        n = len(hub.requests)
        assert pull(settings, "Qwen2.5-0.5B", timeout=5) == paths
        assert len(hub.requests) == n
    assert set(paths) == {"chat", "base"}
    done = [e for e in rep.events if isinstance(e, StageFinished)]
    assert [(e.stage, e.status) for e in done] == [("pull-chat", "ok"), ("pull-base", "ok")]
    assert done[0].summary["bytes"] == sum(len(b) for b in chat.values())
    progress = [e for e in rep.events if isinstance(e, StageProgress) and e.stage == "pull-chat"]
    assert progress[-1].done == progress[-1].total == sum(len(b) for b in chat.values())
    r = resolve_candidate(settings, "Qwen2.5-0.5B")
    assert r.merge_supported and r.chat_path == paths["chat"] and r.base_path == paths["base"]


def test_interrupted_pull_resumes_and_keeps_finished_files(settings, online, monkeypatch):
    files = model_files(arch="qwen2", chat=True, shards=3)
    with FakeHub({"Qwen/Qwen2.5-0.5B-Instruct": files}, fail_once={"model-00003-of-00003.safetensors"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        rep = ListReporter()
        with pytest.raises(HubError, match="HTTP 500"):
            pull(settings, "Qwen2.5-0.5B", which="chat", reporter=rep, timeout=5)
        assert [e.status for e in rep.events if isinstance(e, StageFinished)] == ["failed"]
        c = RegistryStore(settings).get("Qwen2.5-0.5B")
        assert c.capability.chat_location == "hf-cache-partial"
        assert "partly downloaded" in _partial_message(settings)
        before = len(hub.requests)
        paths = pull(settings, "Qwen2.5-0.5B", which="chat", timeout=5)
        again = [r[1].rsplit("/", 1)[-1] for r in hub.requests[before:] if r[0] == "GET" and "/resolve/" in r[1]]
    assert again == ["model-00003-of-00003.safetensors"]          # finished shards were not fetched again
    from pathlib import Path

    for name, data in files.items():
        assert (Path(paths["chat"]) / name).read_bytes() == data


def _partial_message(settings) -> str:
    from damoc.errors import DamocError

    try:
        resolve_candidate(settings, "Qwen2.5-0.5B")
    except DamocError as e:
        return e.message
    return ""


def test_pull_of_a_gated_repo_without_token_explains(settings, online, monkeypatch):
    files = model_files(arch="mistral", chat=True)
    with FakeHub({"mistralai/Ministral-8B-Instruct-2410": files}, gated={"mistralai/Ministral-8B-Instruct-2410"}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        rep = ListReporter()
        with pytest.raises(HubError) as e:
            pull(settings, "Ministral-8B-Instruct-2410", reporter=rep, timeout=5)
    assert "is gated" in e.value.message and "hf auth login" in e.value.hint
    assert f"{hub.url}/mistralai/Ministral-8B-Instruct-2410" in e.value.hint
    fin = [ev for ev in rep.events if isinstance(ev, StageFinished)]
    assert fin and fin[-1].status == "failed"


def test_pull_of_unknown_repo_and_base_only_without_base(settings, online, monkeypatch):
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        store = RegistryStore(settings)
        store.add(Candidate(name="typo", chat=ModelRef("acme/does-not-exist")))
        with pytest.raises(HubError, match="acme/does-not-exist not found on the hub"):
            pull(settings, "typo", timeout=5)
    with pytest.raises(Exception, match="has no Base to pull"):
        pull(settings, "Phi-3-small-8k-instruct", which="base")
