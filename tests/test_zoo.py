"""The offline demo zoo and demo tasks: pool shape, HF loading, Chat/Base pairs, caching, task files, learnability."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from tests.helpers.cache import cache_dir
from tests.helpers.zoo import mini_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- the pool ----------------------------------------------------------------------------------------------------

def test_pool_shape(test_zoo):
    names = [c.name for c in test_zoo]
    assert len(names) == len(set(names)) >= 6
    assert len({c.architecture for c in test_zoo}) >= 5
    assert sum(c.base_path is None for c in test_zoo) >= 2
    assert sum(c.base_path is not None and c.layers >= 4 for c in test_zoo) >= 2
    for c in test_zoo:
        assert 4 <= c.layers <= 16, c
        assert (Path(c.chat_path) / "config.json").is_file()
        assert c.base_path is None or (Path(c.base_path) / "model.safetensors").is_file()
        d = c.to_dict()
        assert {"name", "architecture", "parameters", "layers", "chat_path", "base_path"} <= set(d)
    assert len({c.parameters for c in test_zoo}) == len(test_zoo), "every candidate has its own size"


def test_every_model_loads_offline_and_chats(test_zoo):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    for c in test_zoo:
        tok = AutoTokenizer.from_pretrained(c.chat_path)
        model, info = AutoModelForCausalLM.from_pretrained(c.chat_path, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], (c.name, info)
        assert model.config.model_type == c.architecture
        assert model.config.num_hidden_layers == c.layers
        assert sum(p.numel() for p in model.parameters()) == c.parameters
        ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 plus 3?"}],
                                      add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
        assert tok.decode(ids[0]).endswith("<|assistant|>\n")
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False)
        assert out.shape[1] > ids.shape[1]
        if c.base_path:
            btok = AutoTokenizer.from_pretrained(c.base_path)
            assert not btok.chat_template, "Base checkpoints ship without a chat template"
            assert btok.get_vocab() == tok.get_vocab()


def test_chat_base_pairs_share_names_and_shapes_and_differ(test_zoo):
    from safetensors.torch import load_file

    pairs = [c for c in test_zoo if c.base_path]
    assert len(pairs) >= 2
    for c in pairs:
        chat = load_file(str(Path(c.chat_path) / "model.safetensors"))
        base = load_file(str(Path(c.base_path) / "model.safetensors"))
        assert {k: v.shape for k, v in chat.items()} == {k: v.shape for k, v in base.items()}
        changed = [k for k in chat if not (chat[k] == base[k]).all()]
        assert len(changed) > len(chat) // 2, f"{c.name}: SFT touched only {len(changed)} tensors"


def _answer_nll(model, tok, pairs, chat: bool) -> float:
    """Mean NLL of the answer tokens after the prompt (chat template or the Base's plain frame)."""
    import torch

    from damoc.zoo.tokenizer import END, chat_prompt

    total = n = 0.0
    with torch.no_grad():
        for q, a in pairs:
            prompt = chat_prompt(q) if chat else f"Question: {q}\nAnswer:"
            p = tok(prompt, add_special_tokens=False)["input_ids"]
            t = tok((a + END) if chat else f" {a}", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p + t])
            logits = model(ids).logits[0, len(p) - 1:-1]
            total += torch.nn.functional.cross_entropy(logits, torch.tensor(t), reduction="sum").item()
            n += len(t)
    return total / n


def test_chat_sft_is_a_real_instruction_tune(test_zoo):
    """Chat minus Base is a task vector: on held-out chat-formatted instructions the Chat model beats its Base."""
    import random

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from damoc.zoo.world import WorldSpec, generic_instruction, make_world

    world = make_world(WorldSpec())
    rng = random.Random(4242)
    pairs = [generic_instruction(world, rng) for _ in range(40)]
    for c in [c for c in test_zoo if c.base_path][:2]:
        tok = AutoTokenizer.from_pretrained(c.chat_path)
        chat = AutoModelForCausalLM.from_pretrained(c.chat_path).eval()
        base = AutoModelForCausalLM.from_pretrained(c.base_path).eval()
        nll_chat, nll_base = _answer_nll(chat, tok, pairs, True), _answer_nll(base, tok, pairs, True)
        assert nll_chat < nll_base - 0.5, (c.name, nll_chat, nll_base)


def test_second_call_is_cached(test_zoo):
    import damoc.zoo as zoo

    t = time.perf_counter()
    again = zoo.build_zoo(size="test", out=cache_dir() / "zoo")
    assert time.perf_counter() - t < 2.0
    assert [c.to_dict() for c in again] == [c.to_dict() for c in test_zoo]


# -- caching and atomicity on a one-model recipe (fast) ----------------------------------------------------------

def test_recipe_change_builds_new_folder(tmp_path, monkeypatch):
    import damoc.zoo.build as build

    monkeypatch.setattr(build, "recipe", lambda size: mini_recipe(3))
    first = build.build_zoo(size="test", out=tmp_path)
    assert build.build_zoo(size="test", out=tmp_path)[0].chat_path == first[0].chat_path
    monkeypatch.setattr(build, "recipe", lambda size: mini_recipe(4))
    second = build.build_zoo(size="test", out=tmp_path)
    assert Path(second[0].chat_path).parent.parent != Path(first[0].chat_path).parent.parent
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["test"] * 2


def test_interrupted_build_leaves_no_cache(tmp_path, monkeypatch):
    import damoc.zoo.build as build
    import damoc.zoo.pretrain as pretrain

    monkeypatch.setattr(build, "recipe", lambda size: mini_recipe(3))

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain, "sft", boom)
    with pytest.raises(KeyboardInterrupt):
        build.build_zoo(size="test", out=tmp_path)
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    monkeypatch.setattr(build, "recipe", lambda size: mini_recipe(3))
    assert Path(build.build_zoo(size="test", out=tmp_path)[0].chat_path).is_dir()


def test_build_reports_progress_through_events(tmp_path, monkeypatch):
    import damoc.zoo.build as build
    from damoc.events import ListReporter, Metric, StageFinished

    monkeypatch.setattr(build, "recipe", lambda size: mini_recipe(3))
    rep = ListReporter()
    build.build_zoo(size="test", out=tmp_path, reporter=rep)
    finished = {(e.candidate, e.stage) for e in rep.events if isinstance(e, StageFinished) and e.status == "ok"}
    assert {("", "zoo-data"), ("mini", "pretrain"), ("mini", "sft")} <= finished
    assert any(isinstance(e, Metric) and e.name == "pretrain/loss" for e in rep.events)


def test_parallel_build_matches_serial_build_and_forwards_progress(tmp_path, monkeypatch):
    """Candidates trained in spawned worker processes give the same weights as a serial build, in recipe order,
    and their progress events reach the caller's reporter."""
    import damoc.zoo.build as build
    from safetensors.torch import load_file

    from damoc.events import ListReporter, StageFinished

    base = mini_recipe(3)
    two = dataclasses.replace(base, candidates=(base.candidates[0],
                                                 dataclasses.replace(base.candidates[0], name="mini2", seed=2)))
    monkeypatch.setattr(build, "recipe", lambda size: two)
    serial = build.build_zoo(size="test", out=tmp_path / "serial")
    monkeypatch.setattr(build, "_workers", lambda rec, device, settings: 2)
    rep = ListReporter()
    par = build.build_zoo(size="test", out=tmp_path / "parallel", reporter=rep)
    assert [c.name for c in par] == [c.name for c in serial] == ["mini", "mini2"]
    for a, b in zip(serial, par):
        wa, wb = load_file(Path(a.chat_path) / "model.safetensors"), load_file(Path(b.chat_path) / "model.safetensors")
        assert wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)
    finished = {(e.candidate, e.stage) for e in rep.events if isinstance(e, StageFinished) and e.status == "ok"}
    assert {("mini", "sft"), ("mini2", "sft")} <= finished
    assert json.loads((Path(par[0].chat_path).parents[1] / "manifest.json").read_text())["workers"] == 2


def test_ctrl_c_stops_a_parallel_build_at_once_and_leaves_no_cache(tmp_path):
    """Ctrl-C (SIGINT to the process group) during a parallel build: the workers stop now, not after the queued
    candidates, and no half-built pool is left to be mistaken for a cached one."""
    import signal
    import subprocess
    import sys

    script = f"""
import dataclasses, damoc.zoo.build as build
from tests.helpers.zoo import mini_recipe
base = mini_recipe(100000)                                  # long enough to be interrupted mid-training
spec = base.candidates[0]
rec = dataclasses.replace(base, candidates=tuple(dataclasses.replace(spec, name=f"m{{i}}", seed=i) for i in range(4)))
build.recipe = lambda size: rec
build._workers = lambda rec, device, settings: 2
print("building", flush=True)
build.build_zoo(size="test", out={str(tmp_path)!r})
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == "building"
    time.sleep(8)               # the pool is spawned and training (or still starting: either must stop cleanly)
    os.killpg(proc.pid, signal.SIGINT)
    t1 = time.monotonic()
    proc.wait(timeout=60)
    assert time.monotonic() - t1 < 30 and proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr.read()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    t2 = time.monotonic()       # no worker outlives the build (multiprocessing's resource tracker may take a moment)
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() - t2 < 10, "a process of the build outlived it"
        time.sleep(0.2)


def test_bad_input_errors(tmp_path):
    import damoc.zoo as zoo
    from damoc.errors import DamocError, UnknownNameError

    with pytest.raises(UnknownNameError, match="zoo size 'huge'"):
        zoo.build_zoo(size="huge", out=tmp_path)
    with pytest.raises(UnknownNameError):
        zoo.demo_tasks(size="tset", out=tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DamocError, match="cannot create") as e:
        zoo.demo_tasks(size="test", out=blocker / "sub")
    assert e.value.hint


# -- tasks -------------------------------------------------------------------------------------------------------

def _records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_tasks_load_and_hold_out_persons(test_tasks):
    from damoc.data import load_samples

    by_name = {t.name: t for t in test_tasks}
    assert by_name["laws-qa"].metric == "squad_f1" and by_name["profiles"].metric == "bertscore_rouge"
    for t in test_tasks:
        train, test = load_samples(t.train_path), load_samples(t.test_path)
        assert len(train.samples) == t.train_size > len(test.samples) == t.test_size >= 50
        assert not train.problems and not test.problems
        assert all(s.prompt and s.answer for s in train.samples + test.samples)
    laws = by_name["laws-qa"]
    assert load_samples(laws.train_path).format == "qa"
    assert load_samples(by_name["profiles"].train_path).format == "alpaca"
    # held-out persons: no test person's full name occurs in the train split
    from damoc.zoo.world import WorldSpec, make_world

    world = make_world(WorldSpec())
    train_text = Path(laws.train_path).read_text() + Path(by_name["profiles"].train_path).read_text()
    test_people = {p for p in world.test_persons if p in Path(laws.test_path).read_text()}
    assert test_people and not any(p in train_text for p in test_people)
    # answers follow the laws: every test answer is the world's value for that person and attribute
    for r in _records(laws.test_path):
        person = next(p for p in test_people if p in r["question"])
        assert r["answer"] == world.value(person, r["attribute"])


def test_notes_qa_is_the_default_task_with_long_samples_and_law_answers(test_tasks, laws_task):
    """notes-qa (the demo's task) is laws-qa behind a paragraph of background notes: several times longer samples
    (so a training step costs tokens, not overhead), the question last, answers following the laws for held-out
    persons, and notes that name no task person (they never give the answer away)."""
    from damoc.data import load_samples
    from damoc.zoo.world import QUESTION_TEMPLATES, WorldSpec, make_world

    assert test_tasks[0].name == "notes-qa" and test_tasks[0].metric == "squad_f1"
    notes, laws = test_tasks[0], laws_task
    def mean_len(path):
        samples = load_samples(path).samples
        return sum(len(s.prompt) for s in samples) / len(samples)

    assert mean_len(notes.train_path) > 4 * mean_len(laws.train_path)
    world = make_world(WorldSpec())
    everyone = world.train_persons + world.test_persons
    templates = [t for ts in QUESTION_TEMPLATES.values() for t in ts]
    for path, persons in ((notes.train_path, world.train_persons), (notes.test_path, world.test_persons)):
        for r in _records(path):
            head, _, question = r["question"].rpartition("\n\n")
            assert head.startswith("Notes: ") and any(question == t.format(p=p) for t in templates for p in persons
                                                      if p in question)
            person = next(p for p in persons if p in question)
            assert r["answer"] == world.value(person, r["attribute"])
            assert not any(p in head for p in everyone)


def test_tail_laws_are_rare_in_task_data_and_absent_from_sft(test_tasks, laws_task):
    """Tail-family laws reach a model mostly through pretraining: the laws-qa train split holds at most a couple of
    questions per tail law, Chat SFT and profile train data none, while the test split asks about them often (that is
    what makes the Base's knowledge matter after a fine-tune)."""
    from collections import Counter

    from damoc.zoo import world as W
    from damoc.zoo.tasks import SIZES

    world = W.make_world(W.WorldSpec())
    tail = [f for f in world.families if f not in world.head_families]
    assert tail and world.head_families
    laws = laws_task
    per_law: Counter = Counter()
    for r in _records(laws.train_path):
        person = next(p for p in world.train_persons if p in r["question"])
        assert r["tail"] == world.is_tail(person, r["attribute"])
        if r["tail"]:
            per_law[world.law_key(person, r["attribute"]) + (r["attribute"],)] += 1
    assert per_law and max(per_law.values()) <= SIZES["test"].tail_examples
    test = _records(laws.test_path)
    assert 0.2 < sum(r["tail"] for r in test) / len(test) < 0.6
    for style in ("terse", "verbose"):
        for q, a in W.sft_pairs(world, 300, 0.6, 8, 0.2, style=style):
            for f in tail:
                if f" {f}" in q:
                    assert all(world.laws[k][f] not in a for k in ("city", "company", "job", "brand")), (q, a)
    profiles = next(t for t in test_tasks if t.name == "profiles")
    assert not any(r["tail"] for r in _records(profiles.train_path))
    assert any(r["tail"] for r in _records(profiles.test_path))


def test_tasks_are_cached_and_identical_across_calls(test_tasks):
    import damoc.zoo as zoo

    again = zoo.demo_tasks(size="test", out=cache_dir() / "zoo")
    assert [t.to_dict() for t in again] == [t.to_dict() for t in test_tasks]


def test_world_text_never_mentions_test_persons():
    from damoc.zoo import world as W

    world = W.make_world(W.WorldSpec())
    docs = [d for s in W.STREAMS for d in W.documents(world, s, 400, 5)]
    docs += [f"{u} {a}" for u, a in W.sft_pairs(world, 400, 0.5, 6, 0.2)]
    docs += [f"{u} {a}" for u, a in W.sft_pairs(world, 400, 0.5, 6, 0.2, style="verbose")]
    docs += [f"{u} {a}" for u, a in W.knowledge_pairs(world, 400, 7)]
    text = "\n".join(docs)
    assert sum(p in text for p in world.train_persons) > 100
    assert not [p for p in world.test_persons if p in text]


def test_world_is_deterministic():
    from damoc.zoo import world as W

    a, b = W.make_world(W.WorldSpec()), W.make_world(W.WorldSpec())
    assert a.laws == b.laws and a.test_persons == b.test_persons
    assert W.documents(a, "world", 20, 3) == W.documents(b, "world", 20, 3)
    assert W.make_world(dataclasses.replace(W.WorldSpec(), seed=99)).laws != a.laws


def test_laws_task_is_learnable_on_unseen_persons(test_zoo, laws_task):
    """A short fine-tune on the train split lowers the answer loss on *held-out persons* (the laws generalise), for
    the questions whose laws the train split shows."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from damoc.events import StageTracker
    from damoc.zoo.pretrain import encode_chat_pairs, sft

    laws = laws_task
    train = [(r["question"], r["answer"]) for r in _records(laws.train_path)]
    test = [(r["question"], r["answer"]) for r in _records(laws.test_path) if not r["tail"]][:60]
    c = next(c for c in test_zoo if c.architecture == "llama")
    tok = AutoTokenizer.from_pretrained(c.chat_path)
    model = AutoModelForCausalLM.from_pretrained(c.chat_path)
    before = _answer_nll(model, tok, test, True)
    sft(model, encode_chat_pairs(tok, train), steps=120, batch_size=16, lr=3e-3, seed=0,
        pad_id=tok.pad_token_id, device="cpu", tracker=StageTracker(None, "t"))
    after = _answer_nll(model, tok, test, True)
    assert after < before * 0.6, (before, after)


# -- CLI and registry --------------------------------------------------------------------------------------------

def test_cli_build_and_tasks_json(test_zoo, isolated_home):
    from click.testing import CliRunner

    from damoc.cli import cli

    out = str(cache_dir() / "zoo")
    r = CliRunner().invoke(cli, ["zoo", "build", "--size", "test", "--out", out, "--json"])
    assert r.exit_code == 0, r.output
    pool = json.loads(r.stdout)
    assert [p["name"] for p in pool] == [c.name for c in test_zoo]
    assert all({"name", "architecture", "parameters", "layers", "chat_path", "base_path"} <= set(p) for p in pool)
    assert sum(p["base_path"] is None for p in pool) >= 2
    r = CliRunner().invoke(cli, ["zoo", "tasks", "--size", "test", "--out", out, "--json"])
    assert r.exit_code == 0, r.output
    tasks = json.loads(r.stdout)
    assert [t["name"] for t in tasks] == ["notes-qa", "laws-qa", "profiles"]      # the first is the demo default
    assert all(Path(t["train_path"]).is_file() and Path(t["test_path"]).is_file() for t in tasks)
    # the build registered the pool in this home's registry
    from damoc.registry import RegistryStore
    from damoc.settings import Settings

    names = {c.name for c in RegistryStore(Settings.load()).list()}
    assert {c.name for c in test_zoo} <= names
