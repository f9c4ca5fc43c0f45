"""Samples between processes: each data cell writes JSONL that the next cell reads back exactly (no format
detection, unlike the user's files)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from damoc.data.sample import Sample
from damoc.fsutil import atomic_write_text

TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"
ORDER_FILE = "order.json"      # a filter cell's kept ids in pick order


def write_samples_jsonl(path: Path, samples: list[Sample]) -> None:
    lines = []
    for s in samples:
        d = dataclasses.asdict(s)
        d.pop("raw", None)
        lines.append(json.dumps(d, ensure_ascii=False, default=str))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_samples_jsonl(path: Path) -> list[Sample]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(Sample(**json.loads(line)))
    return out


def token_estimate(samples: list[Sample]) -> int:
    """Whitespace-token count of prompts + answers: a tokenizer-free size measure comparable across stages."""
    return sum(len(s.prompt.split()) + len(s.answer.split()) for s in samples)


def nested_subset(samples: list[Sample], fraction: float, order: list[str] | None, seed: int = 0) -> list[Sample]:
    """The first `fraction` of `samples` in `order` (a filter's pick order; without one, a seeded hash order), kept
    in their own order. Subsets of one order are nested: a smaller fraction is a subset of a larger one."""
    if fraction >= 1.0:
        return samples
    ids = {s.id for s in samples}
    ranked = [i for i in order if i in ids] if order else sorted(ids, key=lambda i: _hash_key(i, seed))
    keep = set(ranked[:max(1, round(fraction * len(samples)))])
    return [s for s in samples if s.id in keep]


def _hash_key(sample_id: str, seed: int) -> str:
    import hashlib

    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()
