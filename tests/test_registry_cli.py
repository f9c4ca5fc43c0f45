"""`damoc registry ...` end to end (in-process through click, and a few real subprocesses for exit codes and
concurrent writers)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from damoc.cli import cli
from damoc.errors import DamocError
from tests.helpers.fakes import write_cached, write_model

DAMOC = [sys.executable, "-m", "damoc"]


def run(*args, ok=True):
    res = CliRunner().invoke(cli, ["registry", *args], catch_exceptions=True)
    if ok and res.exit_code != 0:
        raise AssertionError(f"exit {res.exit_code}: {res.output}\n{res.exception!r}")
    return res


def run_json(*args):
    return json.loads(run(*args, "--json").stdout)


def test_list_json_contract(settings):
    lst = run_json("list")
    assert all({"name", "chat", "base", "merge_supported", "merge_reason"} <= set(e) for e in lst)
    text = lambda e: (e["name"] + " " + str(e.get("chat")) + " " + str(e.get("base"))).lower()
    for key in ["llama-3.1-8b", "qwen2.5-7b", "gemma-2-9b", "glm-4-9b", "ministral-8b", "phi-3-small", "yi-1.5-9b",
                "internlm2_5-7b"]:
        hits = [e for e in lst if key in text(e)]
        assert hits, key
        if key in ("ministral-8b", "phi-3-small"):
            assert all(not e["merge_supported"] and "pruning skipped: no Base" in e["merge_reason"] for e in hits)
            assert all(e["base"] is None for e in hits)
    table = run("list").stdout
    assert "Ministral-8B" in table and "no Base" in table


def test_add_show_remove_folder_pair(settings, tmp_path):
    write_model(tmp_path / "fam" / "chat", chat=True, seed=1)
    write_model(tmp_path / "fam" / "base", seed=2)
    e = run_json("add", "--chat", str(tmp_path / "fam" / "chat"), "--base", str(tmp_path / "fam" / "base"))
    assert e["name"] == "fam" and e["merge_supported"] and e["chat_location"] == "folder"
    shown = run_json("show", "fam")
    assert shown["capability"]["state"] == "supported" and shown["chat_facts"]["architecture"] == "llama"
    assert "fam" in [x["name"] for x in run_json("list", "--source", "user")]
    res = run("add", "--chat", str(tmp_path / "fam" / "chat"), ok=False)
    assert isinstance(res.exception, DamocError) and "exists already" in str(res.exception)
    run("remove", "fam")
    assert "fam" not in [x["name"] for x in run_json("list")]


def test_add_bad_inputs_give_reasons(settings, tmp_path):
    (tmp_path / "empty").mkdir()
    res = run("add", "--chat", str(tmp_path / "empty"), ok=False)
    assert "no config.json" in str(res.exception)
    write_model(tmp_path / "c", arch="llama", chat=True)
    write_model(tmp_path / "b", arch="qwen2")
    res = run("add", "--chat", str(tmp_path / "c"), "--base", str(tmp_path / "b"), ok=False)
    assert "different families" in str(res.exception) and "llama" in str(res.exception)
    res = run("add", "--chat", "not a model", ok=False)
    assert "neither an existing folder nor a hub id" in str(res.exception)
    res = run("show", "qwen2.5-7", ok=False)
    assert "did you mean Qwen2.5-7B" in str(res.exception)
    assert not settings.registry_path.exists()           # nothing half-written


def test_add_hub_id_registers_without_download(settings):
    e = run_json("add", "--chat", "acme/new-model-instruct", "--base", "acme/new-model", "--name", "newm")
    assert e["chat_location"] == "hub" and not e["merge_supported"] and "not available locally" in e["merge_reason"]


def test_hide_and_restore_catalog_entry(settings):
    run("remove", "gemma-2-2b")
    assert "gemma-2-2b" not in [x["name"] for x in run_json("list")]
    run("restore", "gemma-2-2b")
    assert "gemma-2-2b" in [x["name"] for x in run_json("list")]


def test_export_import_round_trip(settings, tmp_path, monkeypatch):
    write_model(tmp_path / "c", chat=True)
    run("add", "--chat", str(tmp_path / "c"), "--name", "exp-me", "--notes", "hello")
    run("export", str(tmp_path / "out.json"))
    data = json.loads((tmp_path / "out.json").read_text())
    assert [c["name"] for c in data["candidates"]] == ["exp-me"]
    monkeypatch.setenv("DAMOC_HOME", str(tmp_path / "other-home"))
    run("import", str(tmp_path / "out.json"))
    e = run_json("show", "exp-me")
    assert e["notes"] == "hello" and e["chat"] == str(tmp_path / "c")
    res = run("import", str(tmp_path / "out.json"), ok=False)
    assert "exists already" in str(res.exception)
    run("import", str(tmp_path / "out.json"), "--replace")


def test_import_of_a_bad_file_writes_nothing(settings, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"candidates": [{"name": "ok", "chat": {"id": "a/b"}},
                                                                  {"name": "broken"}]}))
    res = run("import", str(tmp_path / "bad.json"), ok=False)
    assert "entry #2 is malformed" in str(res.exception)
    (tmp_path / "notjson.json").write_text("[1, 2")
    assert "not a registry export" in str(run("import", str(tmp_path / "notjson.json"), ok=False).exception)
    assert not settings.registry_path.exists()


def test_scan_check_and_preflight_commands(settings, hf_cache):
    write_cached(hf_cache, "acme/Tiny-1B-Instruct", chat=True, seed=1)
    write_cached(hf_cache, "acme/Tiny-1B", seed=2)
    rep = run_json("scan")
    assert [a["name"] for a in rep["added"]] == ["Tiny-1B-Instruct"] and rep["added"][0]["base"] == "acme/Tiny-1B"
    checked = run_json("check", "Tiny-1B-Instruct")
    assert checked[0]["merge_supported"] and checked[0]["state"] == "supported"
    pf = run_json("preflight", "Tiny-1B-Instruct", "Ministral-8B-Instruct-2410", "--set", "seq_len=64",
                  "--set", "device=cpu")
    assert pf["config"]["seq_len"] == 64 and pf["candidates"][0]["download_bytes"] == 0
    assert pf["candidates"][1]["download_bytes"] > 10e9
    out = run("preflight", "Tiny-1B-Instruct").stdout
    assert "LoRA FT" in out and "peak memory" in out


def test_errors_and_offline_through_the_real_command(settings, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run(DAMOC + ["registry", "check", "--online"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "offline mode" in p.stderr and "hint:" in p.stderr and p.stdout == ""
    p = subprocess.run(DAMOC + ["registry", "pull", "SmolLM2-135M"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 2 and "offline mode" in p.stderr
    settings.registry_path.parent.mkdir(parents=True, exist_ok=True)
    settings.registry_path.write_text("{oops")
    p = subprocess.run(DAMOC + ["registry", "list", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "corrupt" in p.stderr and p.stdout == ""
    p = subprocess.run(DAMOC + ["registry", "reset", "--yes"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0 and "kept as" in p.stderr
    assert not settings.registry_path.exists()


@pytest.mark.slow
def test_concurrent_cli_adds(settings, tmp_path):
    chat = write_model(tmp_path / "c", chat=True)
    script = "; ".join(f"{' '.join(DAMOC)} registry add --chat {chat} --name cc-$P-{i} >/dev/null 2>&1"
                       for i in range(3))
    procs = [subprocess.Popen(["bash", "-c", script], env=dict(os.environ, P=str(p))) for p in range(3)]
    assert [p.wait(180) for p in procs] == [0, 0, 0]
    names = [e["name"] for e in run_json("list", "--source", "user")]
    assert sorted(names) == sorted(f"cc-{p}-{i}" for p in range(3) for i in range(3))
