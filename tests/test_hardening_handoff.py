"""Issue 16, items 1 and 3: nothing a user names reaches the hand-off files unescaped, candidate names are checked
wherever they enter, and remote code is a fact that is never trusted without the user's opt-in.

The generated `swift_sft.sh` is run for real with stub `swift` / `llamafactory-cli` on PATH that record their argv:
it must pass exactly the intended arguments and create nothing else; the YAML must parse back to the intended values.
"""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings as hyp_settings
from hypothesis import strategies as st

from damoc.errors import DamocError
from damoc.pipeline.handoff import Winner, handoff_files
from damoc.registry.models import NAME_RE, check_name
from tests.helpers.fakes import write_model

# names and paths a careful tester feeds in: line breaks of every kind, quotes, substitutions, traversal
HOSTILE = [
    "m\ntouch PWNED #",
    "m\rtouch PWNED",
    "m'; touch PWNED; echo '",
    'm"; touch PWNED; echo "',
    "m$(touch PWNED)",
    "m`touch PWNED`",
    "../../etc/passwd",
    "m\u2028touch PWNED",
    "m\u2029key: injected",
    "m\x85touch PWNED",
    "m\nextra_key: injected",
    "m: {a: 1}",
    "- item",
    "m #comment",
    "m\\\ntouch PWNED",
    "${IFS}touch${IFS}PWNED",
    "m\x00nul",
    "",
    "m" * 300,
]

STUB = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["ARGV_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def _intended_swift_argv(files: dict[str, str]) -> list[str]:
    """What the script means to pass: its `swift` command line, parsed as the shell would (no execution)."""
    sh = files["swift_sft.sh"]
    cmd = sh[sh.index("swift sft"):].rstrip("\n")
    # one "--flag 'value'" per continued line, as handoff_files writes it
    return [tok for part in cmd.split(" \\\n    ") for tok in shlex.split(part, posix=True)][1:]


def _run_script(tmp_path: Path, files: dict[str, str]) -> tuple[list[list[str]], set[str]]:
    sandbox = tmp_path / "sandbox"
    bindir = tmp_path / "bin"
    sandbox.mkdir()
    bindir.mkdir()
    for tool in ("swift", "llamafactory-cli"):
        (bindir / tool).write_text(STUB)
        (bindir / tool).chmod(0o755)
    for name, text in files.items():
        (sandbox / name).write_text(text, encoding="utf-8")
    before = {p.name for p in sandbox.iterdir()}
    log = tmp_path / "argv.jsonl"
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "ARGV_LOG": str(log), "HOME": str(tmp_path)}
    res = subprocess.run(["bash", "./swift_sft.sh"], cwd=sandbox, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    created = {p.name for p in sandbox.iterdir()} - before
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return calls, created


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda s: repr(s)[:30])
def test_a_hostile_winner_name_and_model_path_run_exactly_the_intended_command(tmp_path, hostile):
    data_dir = tmp_path / ("data" + hostile.replace("/", "_").replace("\x00", "")[:50])
    data_dir.mkdir()
    data = data_dir / "train.jsonl"
    data.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    model = "/models/" + hostile.replace("\x00", "")
    files = handoff_files(Winner(hostile, model, family="qwen"), str(data), run_id="20260101-000000-abcd",
                          score="squad_f1 0.5")
    calls, created = _run_script(tmp_path, files)
    assert created == set(), f"the script created {created}"
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    assert len(calls) == 1
    argv = calls[0]
    assert argv == _intended_swift_argv(files)
    assert argv[:2] == ["sft", "--model"] and argv[2] == model            # the path, byte for byte
    assert argv[argv.index("--dataset") + 1] == str(data.resolve())
    out = argv[argv.index("--output_dir") + 1]
    assert out.startswith("output/") and ".." not in out.split("/") and NAME_RE.match(out.split("/", 1)[1])
    # YAML: one document, exactly the intended keys and values (nothing injected through a line break)
    lf = yaml.safe_load(files["llamafactory_sft.yaml"])
    assert lf["model_name_or_path"] == model and lf["trust_remote_code"] is False
    assert set(lf) == {"model_name_or_path", "trust_remote_code", "stage", "do_train", "finetuning_type",
                       "deepspeed", "dataset", "dataset_dir", "template", "cutoff_len", "preprocessing_num_workers",
                       "output_dir", "logging_steps", "save_steps", "plot_loss", "overwrite_output_dir",
                       "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                       "num_train_epochs", "optim", "lr_scheduler_type", "warmup_ratio", "bf16", "ddp_timeout"}
    info = json.loads(files["llamafactory_dataset_info.json"])
    assert [e["file_name"] for e in info.values()] == [str(data.resolve())]


def test_the_llamafactory_config_runs_with_a_stub_cli(tmp_path):
    """The YAML as llamafactory-cli gets it: a stub reads it back and sees the hostile path as one value."""
    model = "/models/m\nextra: 1"
    files = handoff_files(Winner("m\nx: 1", model), str(tmp_path / "d.jsonl"))
    lf = yaml.safe_load(files["llamafactory_sft.yaml"])
    assert lf["model_name_or_path"] == model and "extra" not in lf and "x" not in lf


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=0, max_size=60), model=st.text(min_size=1, max_size=60))
def test_any_name_and_path_round_trip_through_yaml_and_shell(tmp_path, name, model):
    files = handoff_files(Winner(name, "/" + model, method="lora"), str(tmp_path / "d.jsonl"), run_id="r")
    lf = yaml.safe_load(files["llamafactory_sft.yaml"])
    assert lf["model_name_or_path"] == "/" + model and lf["finetuning_type"] == "lora"
    argv = _intended_swift_argv(files)
    assert argv[argv.index("--model") + 1] == "/" + model
    # every line before the one command is a comment or a fixed line (a value may span lines, quoted, inside it)
    sh = files["swift_sft.sh"]
    for line in sh[:sh.index("swift sft")].split("\n"):
        assert line == "" or line.startswith(("#", "set -euo", "NPROC_PER_NODE="))


# -- names where they enter --------------------------------------------------------------------------------------

@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda s: repr(s)[:30])
def test_the_name_rule_refuses_every_hostile_name(hostile):
    with pytest.raises(DamocError, match="invalid candidate name"):
        check_name(hostile)


def test_registry_add_import_and_the_store_refuse_hostile_names(settings, tmp_path):
    from damoc.registry import RegistryStore, add_candidate
    from damoc.registry.store import RegistryCorrupt

    chat = write_model(tmp_path / "c", chat=True)
    for bad in ("x\ny", "a b", "../up", "", "$(id)"):
        with pytest.raises(DamocError, match="invalid candidate name"):
            add_candidate(settings, str(chat), name=bad)
    assert not settings.registry_path.exists()
    # import: the whole file is refused, nothing written
    from click.testing import CliRunner

    from damoc.cli import cli

    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"candidates": [{"name": "ok-one", "chat": {"id": "a/b"}},
                                              {"name": "bad\nname", "chat": {"id": "a/c"}}]}))
    res = CliRunner().invoke(cli, ["registry", "import", str(exp)])
    assert res.exit_code != 0 and "entry #2" in str(res.exception) and not settings.registry_path.exists()
    # the store on load: a name written into the file by hand is reported with its entry, the file kept
    add_candidate(settings, str(chat), name="fine")
    data = json.loads(settings.registry_path.read_text())
    next(iter(data["candidates"].values()))["name"] = "evil\ntouch PWNED"
    settings.registry_path.write_text(json.dumps(data))
    kept = settings.registry_path.read_text()
    with pytest.raises(RegistryCorrupt, match="name rule"):
        RegistryStore(settings).list()
    assert settings.registry_path.read_text() == kept


def test_a_hostile_model_folder_given_as_a_candidate_gets_a_safe_distinct_name(settings, tmp_path):
    from damoc.pipeline.plan import folder_candidate_name, resolve_candidate

    names = set()
    for i, hostile in enumerate(["m\ntouch PWNED #", "m'; touch x", "m$(id)", "m\u2028x", "m touch PWNED #"]):
        folder = write_model(tmp_path / str(i) / hostile, chat=True)
        c = resolve_candidate(settings, str(folder), "chat")
        assert NAME_RE.match(c.name) and c.source == "folder" and c.chat_path == str(folder.resolve())
        assert c.name == folder_candidate_name(folder.resolve())
        names.add(c.name)
    assert len(names) == 5
    plain = write_model(tmp_path / "plain" / "my-model", chat=True)
    assert resolve_candidate(settings, str(plain), "chat").name == "my-model"      # a good name is kept


# -- remote code: a fact, trusted only by an opt-in -------------------------------------------------------------

def _remote_folder(tmp_path: Path) -> Path:
    folder = write_model(tmp_path / "remote", chat=True)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_remote_code_is_a_fact_and_trust_needs_the_flag(settings, tmp_path):
    from click.testing import CliRunner

    from damoc.cli import cli
    from damoc.registry import RegistryStore, resolve_candidate

    folder = _remote_folder(tmp_path)
    res = CliRunner().invoke(cli, ["registry", "add", "--chat", str(folder), "--name", "remote-one"])
    assert res.exit_code == 0, res.output
    assert "needs remote code" in res.output and "not trusted" in res.output
    row = next(r for r in json.loads(CliRunner().invoke(cli, ["registry", "list", "--json"]).stdout)
               if r["name"] == "remote-one")
    assert row["needs_remote_code"] is True and row["trust_remote_code"] is False
    shown = CliRunner().invoke(cli, ["registry", "show", "remote-one"]).output
    assert "needs remote code" in shown and "--trust-remote-code" in shown
    r = resolve_candidate(settings, "remote-one")
    assert r.needs_remote_code and not r.trust_remote_code
    # the opt-in, explicit and per candidate
    res = CliRunner().invoke(cli, ["registry", "add", "--chat", str(folder), "--name", "remote-one", "--replace",
                                   "--trust-remote-code", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["trust_remote_code"] is True
    assert resolve_candidate(settings, "remote-one").trust_remote_code
    assert RegistryStore(settings).get("remote-one").trust_remote_code


def test_the_handoff_follows_the_opt_in(settings, tmp_path):
    """api.handoff_for reads the registry entry: trust_remote_code is written true only for an opted-in one."""
    from damoc.registry import RegistryStore, add_candidate

    folder = _remote_folder(tmp_path)
    add_candidate(settings, str(folder), name="remote-one")
    c = RegistryStore(settings).get("remote-one")
    files = handoff_files(Winner(c.name, c.chat.id, trust_remote_code=c.trust_remote_code), str(tmp_path / "d.json"))
    assert yaml.safe_load(files["llamafactory_sft.yaml"])["trust_remote_code"] is False
    add_candidate(settings, str(folder), name="remote-one", replace=True, trust_remote_code=True)
    c = RegistryStore(settings).get("remote-one")
    files = handoff_files(Winner(c.name, c.chat.id, trust_remote_code=c.trust_remote_code), str(tmp_path / "d.json"))
    assert yaml.safe_load(files["llamafactory_sft.yaml"])["trust_remote_code"] is True


def test_an_imported_entry_never_brings_trust_in(settings, tmp_path):
    from click.testing import CliRunner

    from damoc.cli import cli
    from damoc.registry import RegistryStore

    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"candidates": [{"name": "imp", "chat": {"id": "a/b"}, "trust_remote_code": True}]}))
    res = CliRunner().invoke(cli, ["registry", "import", str(exp)])
    assert res.exit_code == 0 and "not trusted" in res.output
    assert RegistryStore(settings).get("imp").trust_remote_code is False


def test_old_files_and_the_catalog_keep_the_fact(settings):
    """Registry files and catalog TOML from before call the fact trust_remote_code: it is read as the fact."""
    from damoc.registry import ModelFacts, RegistryStore

    assert ModelFacts.from_dict({"trust_remote_code": True}).needs_remote_code is True
    glm = RegistryStore(settings).get("glm-4-9b")
    assert glm.needs_remote_code and not glm.trust_remote_code
    assert glm.summary()["trust_remote_code"] is False


def test_preflight_and_plan_show_the_fact(settings, tmp_path):
    from damoc.facade import plan_lines
    from damoc.pipeline import api
    from damoc.registry import add_candidate, preflight

    folder = _remote_folder(tmp_path)
    add_candidate(settings, str(folder), name="remote-one")
    pf = preflight(settings, ["remote-one"], {})
    assert any("needs remote code" in n and "not trusted" in n for n in pf.to_dict()["candidates"][0]["notes"])
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(20)))
    cfg = api.load_config(None, [], {"dataset.train": str(data), "candidates": ["remote-one"]})
    plan = api.plan_run(settings, cfg, with_preflight=False)
    assert plan.candidates[0].needs_remote_code and not plan.candidates[0].trust_remote_code
    assert any("needs remote code" in line for line in plan_lines(plan, cfg))
