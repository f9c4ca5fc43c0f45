"""Demo tasks: fixed train/test splits generated from the zoo's world, written as JSONL that `load_samples` reads.

* `notes-qa` (metric `squad_f1`, the default demo task): laws-qa's questions (other seeds), each after a paragraph
  of background notes, as retrieval-augmented prompts are framed. The notes are generic world text (stories, towns,
  numbers) naming no task person, so they never hold the answer. They give a sample a realistic length (about 80
  tokens with the chat frame, against 20 for laws-qa): on 20-token samples a training step of these tiny models
  costs a fixed overhead, not tokens, and neither token compression nor layer pruning could show what it saves.
  Records: question (notes, then the question) / answer.
* `laws-qa` (metric `squad_f1`): closed-book questions about persons ("Where does Pequa Joca live?"). Answers follow
  laws over parts of the name; test questions are about held-out persons seen nowhere else, so a model must have
  learned the laws, not memorised persons. One attribute (the car) needs both keys. Records: question / answer.
* `profiles` (metric `bertscore_rouge`): "Write a short profile of <person>." -> one or two sentences stating every
  attribute. Records: instruction / output (alpaca shape).

Text only: no model is needed, so `damoc zoo tasks` is cheap and independent of `damoc zoo build`.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from damoc.errors import UnknownNameError
from damoc.fsutil import atomic_write_json, stable_hash
from damoc.settings import Settings
from damoc.zoo.cache import MANIFEST, cached_build
from damoc.zoo.world import ATTRIBUTES, QUESTION_TEMPLATES, World, WorldSpec, generic_doc, make_world

TASKS_VERSION = 6


@dataclass(frozen=True)
class TaskSizes:
    notes_train: int
    notes_test: int
    laws_train: int
    laws_test: int
    profiles_train: int
    profiles_test: int
    tail_examples: int = 2         # laws-qa train questions per tail-family law


SIZES = {
    # demo: sized like a real workload: training (several thousand samples x epochs) dominates evaluation.
    "demo": TaskSizes(notes_train=4000, notes_test=1200, laws_train=5000, laws_test=1200, profiles_train=3000,
                      profiles_test=600),
    "test": TaskSizes(notes_train=300, notes_test=100, laws_train=300, laws_test=100, profiles_train=200,
                      profiles_test=50),
}


@dataclass
class DemoTask:
    name: str
    metric: str                    # "squad_f1" | "bertscore_rouge" (damoc.evaluate METRICS)
    train_path: str
    test_path: str
    description: str
    train_size: int = 0
    test_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DESCRIPTIONS = {
    "notes-qa": "Short-answer questions about unseen persons, each after a paragraph of background notes (about 80 "
                "tokens a sample, as in retrieval-augmented QA); answers follow laws over names (SQuAD F1).",
    "laws-qa": "Closed-book short-answer questions about persons; test persons are unseen, answers follow laws "
               "over first and family names (SQuAD F1).",
    "profiles": "Write a one-sentence profile of a person stating three of their attributes (home, employer, job, "
                "pet, favourite color, car); unseen persons ((BERTScore + ROUGE-L) / 2).",
}
METRICS = {"notes-qa": "squad_f1", "laws-qa": "squad_f1", "profiles": "bertscore_rouge"}


def laws_records(world: World, persons: list[str], n: int, seed: int, split: str, train: bool,
                 tail_examples: int = 0) -> list[dict[str, Any]]:
    """`n` distinct questions. Train splits hold at most `tail_examples` questions per tail-family law (the long
    tail) and may ask one (person, attribute) in several phrasings; test splits ask each (person, attribute) once.
    Every record says whether its answer follows a tail law."""
    rng = random.Random(seed)
    items = [(p, a, t) for p in persons for a in ATTRIBUTES for t in QUESTION_TEMPLATES[a]]
    rng.shuffle(items)
    out, seen, tail_count = [], set(), Counter()
    for p, a, t in items:
        if len(out) == n:
            break
        tail = world.is_tail(p, a)
        if train and tail:
            law = world.law_key(p, a) + (a,)
            if tail_count[law] >= tail_examples:
                continue
            tail_count[law] += 1
        if not train and (p, a) in seen:
            continue
        seen.add((p, a))
        out.append({"id": f"laws-{split}-{len(out):05d}", "question": t.format(p=p), "answer": world.value(p, a),
                    "attribute": a, "tail": tail})
    return out


def with_notes(world: World, records: list[dict[str, Any]], seed: int, docs: int = 2) -> list[dict[str, Any]]:
    """`records` (laws-qa's) with `docs` generic pretraining-style documents as notes before each question: text the
    candidates know the style of, which names no task person."""
    rng = random.Random(seed)
    out = []
    for r in records:
        notes = [generic_doc(world, rng) for _ in range(docs)]
        # notes first, question last (as retrieval-augmented prompts are framed): the question's name then sits
        # next to the answer, which models this small need (zoo-spike: they do not learn long-range lookup)
        out.append({**r, "id": r["id"].replace("laws-", "notes-", 1),
                    "question": "Notes: " + " ".join(notes) + "\n\n" + r["question"]})
    return out


def profile_records(world: World, persons: list[str], n: int, seed: int, split: str,
                    train: bool) -> list[dict[str, Any]]:
    """`n` distinct profile requests, each for three attributes of a person (train splits: head-family laws only,
    so tail knowledge must come from pretraining)."""
    rng = random.Random(seed)
    out, seen = [], set()
    for _ in range(n * 50):
        if len(out) == n:
            break
        p = rng.choice(persons)
        allowed = [a for a in ATTRIBUTES if not train or not world.is_tail(p, a)]
        if len(allowed) < 2:
            continue
        attrs = tuple(sorted(rng.sample(allowed, min(3, len(allowed))), key=ATTRIBUTES.index))
        if (p, attrs) in seen:
            continue
        seen.add((p, attrs))
        instruction, output = world.profile(p, attrs)
        out.append({"id": f"profiles-{split}-{len(out):05d}", "instruction": instruction, "output": output,
                    "tail": any(world.is_tail(p, a) for a in attrs)})
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _build_tasks(tmp: Path, size: str, sizes: TaskSizes, world_spec: WorldSpec) -> None:
    world = make_world(world_spec)
    splits = {
        "notes-qa": (with_notes(world, laws_records(world, world.train_persons, sizes.notes_train, 105, "train",
                                                    train=True, tail_examples=sizes.tail_examples), 106),
                     with_notes(world, laws_records(world, world.test_persons, sizes.notes_test, 107, "test",
                                                    train=False), 108)),
        "laws-qa": (laws_records(world, world.train_persons, sizes.laws_train, 101, "train", train=True,
                                 tail_examples=sizes.tail_examples),
                    laws_records(world, world.test_persons, sizes.laws_test, 102, "test", train=False)),
        "profiles": (profile_records(world, world.train_persons, sizes.profiles_train, 103, "train", train=True),
                     profile_records(world, world.test_persons, sizes.profiles_test, 104, "test", train=False)),
    }
    entries = []
    for name, (train, test) in splits.items():
        (tmp / name).mkdir()
        _write_jsonl(tmp / name / "train.jsonl", train)
        _write_jsonl(tmp / name / "test.jsonl", test)
        entries.append({"name": name, "metric": METRICS[name], "train": f"{name}/train.jsonl",
                        "test": f"{name}/test.jsonl", "description": DESCRIPTIONS[name],
                        "train_size": len(train), "test_size": len(test)})
    atomic_write_json(tmp / MANIFEST, {"size": size, "tasks": entries, "world_seed": world_spec.seed})


def demo_tasks(size: str = "demo", out: str | Path | None = None, settings: Settings | None = None) -> list[DemoTask]:
    """The demo tasks of `size`, generated under `out` (default `settings.zoo_dir`) unless already there."""
    if size not in SIZES:
        raise UnknownNameError("zoo size", size, SIZES)
    if out is None:
        out = (settings or Settings.load()).zoo_dir
    world_spec = WorldSpec()
    key = stable_hash(TASKS_VERSION, asdict(SIZES[size]), asdict(world_spec))
    folder = Path(out).expanduser() / f"tasks-{size}-{key}"
    manifest = cached_build(folder, lambda tmp: _build_tasks(tmp, size, SIZES[size], world_spec))
    return [DemoTask(name=e["name"], metric=e["metric"], train_path=str(folder / e["train"]),
                     test_path=str(folder / e["test"]), description=e["description"],
                     train_size=e["train_size"], test_size=e["test_size"]) for e in manifest["tasks"]]
