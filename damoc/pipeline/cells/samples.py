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
