"""`damoc data inspect`: what a dataset holds and everything wrong with it, without stopping at the first problem."""
from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from damoc.data.io import load_samples
from damoc.data.sample import Sample
from damoc.errors import DamocError

FIELDS = ("instruction", "question", "context", "answer")


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0, "mean": 0, "median": 0, "p95": 0, "max": 0}
    v = sorted(values)
    return {"min": v[0], "mean": round(statistics.fmean(v), 1), "median": statistics.median(v),
            "p95": v[min(len(v) - 1, int(0.95 * (len(v) - 1) + 0.5))], "max": v[-1]}


def make_counter(tokenizer: str | None) -> tuple[str, Callable[[str], int]]:
    if not tokenizer:
        return "whitespace", lambda s: len(s.split())
    from transformers import AutoTokenizer  # heavy: only when a tokenizer is asked for

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except Exception as e:  # OSError, ValueError, hub errors...: a name the user typed, never a crash
        raise DamocError(f"cannot load the tokenizer {tokenizer!r}: {type(e).__name__}: {e}"[:300],
                         "pass a tokenizer folder or a hub id that is in the local cache") from None
    return tokenizer, lambda s: len(tok(s, add_special_tokens=False)["input_ids"]) if s else 0


def inspect_dataset(path: str | Path, *, format: str = "auto", tokenizer: str | None = None,
                    split: str = "train") -> dict[str, Any]:
    res = load_samples(path, format=format, skip_bad=True, split=split, allow_empty=True)
    counter_name, count = make_counter(tokenizer)
    lengths: dict[str, list[int]] = {f: [] for f in FIELDS}
    totals: list[int] = []
    empty: dict[str, int] = {f: 0 for f in FIELDS}
    for s in res.samples:
        tot = 0
        for f in FIELDS:
            text = getattr(s, f)
            n = count(text) if text else 0
            if text:
                lengths[f].append(n)
            else:
                empty[f] += 1
            tot += n
        totals.append(tot)
    problems = [p.to_dict() for p in res.problems]
    if not res.samples:
        problems.append({"line": None, "field": None, "severity": "error", "hint": None,
                         "message": "no usable sample" if res.records_read else "file is empty"})
    return {
        "path": str(res.path),
        "file_type": res.file_type,
        "format": res.format,
        "records": res.records_read,
        "samples": len(res.samples),
        "skipped": res.skipped,
        "multiple_choice": sum(1 for s in res.samples if s.choices),
        "with_context": len(lengths["context"]),
        "tokenizer": counter_name,
        "token_lengths": {f: _stats(v) for f, v in lengths.items() if v} | {"total": _stats(totals)},
        "empty_fields": {f: n for f, n in empty.items() if n and n != len(res.samples)},
        "problems": problems,
        "ok": not any(p["severity"] == "error" for p in problems),
    }


def summary_sample(s: Sample) -> str:
    return (s.prompt[:80] + " -> " + s.answer[:40]).replace("\n", " ")
