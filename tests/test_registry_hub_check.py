"""`damoc registry check --online` computes the sparse-merge capability of a pair that is not downloaded from the
hub's config.json files and safetensors headers (range requests, no weights), by the rule used for local files, and
the registry list, `show` and the pre-flight say it was checked on the hub (issue 17 item 14). A hub id added by
hand that nothing has confirmed is marked as not checked (item 6). No network: the hub is tests.helpers.fakes'."""
from __future__ import annotations

import json

import pytest

from damoc.registry import RegistryStore
from damoc.registry.hub import check_online
from click.testing import CliRunner

from damoc.cli import cli
from tests.helpers.fakes import FakeHub, model_files
from tests.test_registry_hub import online  # noqa: F401  (fixture)

CHAT, BASE = "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B"


def run_cli(args: list[str], *, width: int = 120):
    """The command in this process (a subprocess costs a second each), at a terminal width."""
    return CliRunner(env={"COLUMNS": str(width)}).invoke(cli, args, catch_exceptions=False)


def _hub(base_kw: dict) -> FakeHub:
    chat = model_files(arch="qwen2", chat=True, seed=1, layers=3, shards=2)     # sharded: the index is read too
    base = model_files(arch="qwen2", seed=2, layers=3, **base_kw)
    return FakeHub({CHAT: chat, BASE: base}, config={CHAT: {"model_type": "qwen2"}, BASE: {"model_type": "qwen2"}})


def test_matching_pair_is_supported_on_the_hub_without_downloading_weights(settings, online, monkeypatch):
    with _hub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        store = RegistryStore(settings)
        [res] = check_online(store, [store.get("Qwen2.5-0.5B")], timeout=5)
    assert res.ok and res.hub_check is not None and res.hub_check.merge_supported
    assert res.hub_check.detail["layer_tensors"] == 3 * 9
    # only headers: every weight file was asked for a byte range, never whole; nothing landed in the HF cache
    weights = [(p, r) for m, p, r in hub.requests if m == "GET" and p.endswith(".safetensors")]
    assert weights and all(r and r.startswith("bytes=0-") for _, r in weights)
    assert not any(online.glob("models--*"))
    c = RegistryStore(settings).get("Qwen2.5-0.5B")
    assert c.capability.state == "not_local" and not c.capability.merge_supported     # pruning still needs files
    assert c.capability.hub_check.merge_supported and "checked on the hub" in c.merge_reason
    assert c.chat_facts.layers == 3 and c.chat_facts.hidden_size == 16 and c.chat_facts.origin == "hub"
    assert c.summary()["hub_check"]["merge_supported"] is True
    out = run_cli(["registry", "list"], width=120)
    row = next(line for line in out.stdout.splitlines() if line.strip().startswith("Qwen2.5-0.5B "))
    assert "merge ok (hub)" in row


def test_pair_that_differs_in_one_tensor_names_it(settings, online, monkeypatch):
    bad = "model.layers.1.mlp.up_proj.weight"
    with _hub({"reshape": {bad: (40, 16)}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        out = run_cli(["registry", "check", "Qwen2.5-0.5B", "--online", "--json"])
        text = run_cli(["registry", "check", "Qwen2.5-0.5B", "--online"], width=200).stdout
    row = json.loads(out.stdout)[0]
    hc = row["online"]["hub_check"]
    assert hc["state"] == "base_incompatible" and not hc["merge_supported"]
    assert hc["detail"]["tensor"] == bad and hc["detail"]["chat_shape"] == [32, 16]
    assert hc["detail"]["base_shape"] == [40, 16]
    assert "checked on the hub: Base incompatible" in text and bad in text
    listing = run_cli(["registry", "list"], width=120).stdout
    assert "incompatible (hub)" in next(line for line in listing.splitlines() if "Qwen2.5-0.5B " in line)
    # the pre-flight of a run over it says the same before anything is downloaded
    pf = json.loads(run_cli(["registry", "preflight", "Qwen2.5-0.5B", "--json"]).stdout)
    m = pf["candidates"][0]["merge_check"]
    assert m["checked"] == "hub" and m["supported"] is False and bad in m["reason"]
    assert bad in run_cli(["registry", "preflight", "Qwen2.5-0.5B"], width=200).stdout


def test_hub_id_added_offline_is_marked_not_checked(settings, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = run_cli(["registry", "add", "--chat", "acme/no-such-model-Instruct", "--name", "nosuch"],
                  width=200)
    assert res.exit_code == 0
    assert "could not be checked" in res.stderr and "damoc registry check --online nosuch" in res.stderr
    c = RegistryStore(settings).get("nosuch")
    assert c.unchecked == ["acme/no-such-model-Instruct"] and c.summary()["unchecked"] == c.unchecked
    listing = run_cli(["registry", "list"], width=120).stdout
    assert "not checked" in next(line for line in listing.splitlines() if "nosuch" in line)
    # a catalog entry is not "unchecked": its facts are the catalog's
    assert RegistryStore(settings).get("Qwen2.5-0.5B").unchecked == []


@pytest.mark.parametrize("missing", ["config"])
def test_unknown_repo_on_the_hub_is_an_error_not_a_check(settings, online, monkeypatch, missing):
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        store = RegistryStore(settings)
        [res] = check_online(store, [store.get("Qwen2.5-0.5B")], timeout=5)
    assert not res.ok and res.hub_check is None and "not found on the hub" in res.errors[0]
