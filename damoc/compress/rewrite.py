"""Iterative LLM rewriting of samples that fail the BERTScore gate (the paper's section 3.2 and Appendix A).

Round 1 shows the rewriter the original sample, its compressed form, a few randomly chosen samples that passed the
gate (as examples of acceptable compressed text) and the requirements: keep the meaning of the original, read
fluently, add no content, stay within +-10% of the compressed length. The answer is re-scored with the gate; a
sample that still fails goes to the next round with its failed attempts and their scores shown as negative
examples. After `max_rounds` rounds it falls back to its original text. The prompt wording is ours; the structure
follows Appendix A.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from damoc.backends.base import GenerationBackend

LABELS = {"instruction": "Instruction", "question": "Question", "context": "Context", "answer": "Answer"}
RESPONSE_HEAD = "Revised compressed text:"


@dataclass
class Attempt:
    text: str                      # what the model wrote (after the response head)
    fields: dict[str, str] | None  # parsed fields, None when unparseable
    score: float | None = None
    problem: str = ""              # why it was rejected before scoring (unparseable, too long)


@dataclass
class RewriteJob:
    """One failing sample: its original and compressed editable fields, and the attempts so far."""

    index: int
    original: dict[str, str]
    compressed: dict[str, str]
    compressed_score: float
    attempts: list[Attempt] = field(default_factory=list)


def labelled(fields: dict[str, str]) -> str:
    return "\n".join(f"{LABELS[k]}: {v}" for k, v in fields.items())


def build_prompt(job: RewriteJob, examples: list[dict[str, str]], threshold: float, tolerance: float) -> str:
    """The rewrite instruction (user turn). Examples are compressed samples that passed the gate."""
    pct = round(tolerance * 100)
    parts = [
        "You improve compressed training samples. The [Original] below is a sample made of questions and answers; "
        "the [Compressed] text was made from it by deleting words. Rewrite the [Compressed] text so it reads "
        "clearly and keeps the meaning of the [Original], following the requirements.",
        "",
        "[Original]",
        labelled(job.original),
        "",
        "[Compressed]",
        labelled(job.compressed),
    ]
    if examples:
        parts += ["", "[Examples of good compressed samples]"]
        for n, ex in enumerate(examples, 1):
            parts += [f"Example {n}:", labelled(ex)]
    if job.attempts:
        parts += ["", "[Rejected rewrites: do not repeat them]"]
        for n, at in enumerate(job.attempts, 1):
            why = at.problem or f"similarity {at.score:.3f}, below the required {threshold:.3f}"
            parts += [f"Rejected {n} ({why}):", at.text.strip()[:2000] or "(empty)"]
    parts += [
        "",
        "[Requirements]",
        "- Keep every fact of the [Original] that the [Compressed] text still carries; the meaning must match the "
        "[Original].",
        "- Make the text coherent and easy to follow, without adding new content.",
        f"- The rewrite must be within {pct}% of the length of the [Compressed] text.",
        f"- Keep the same labelled parts ({', '.join(LABELS[k] for k in job.compressed)}), one after another.",
        "",
        "Steps: read the [Original], the [Compressed] text and the examples; rewrite; check every requirement.",
        f"Answer with the line \"{RESPONSE_HEAD}\" followed by the labelled parts, then a line \"Reason:\" with one "
        "sentence on what you changed.",
    ]
    return "\n".join(parts)


def primer(job: RewriteJob) -> str:
    """Start of the response we write for the model, so even a small model continues in the expected layout."""
    first = next(iter(job.compressed))
    return f"{RESPONSE_HEAD}\n{LABELS[first]}:"


_LABEL_RE = re.compile(r"^\s*(Instruction|Question|Context|Answer)\s*:\s*", re.IGNORECASE | re.MULTILINE)


def parse_response(text: str, expected: list[str]) -> dict[str, str] | None:
    """Fields of a rewrite (the text after the response head, primer included); None if a field is missing or
    empty. Everything from a line starting with "Reason:" on is ignored."""
    cut = re.search(r"^\s*Reason\s*:", text, re.IGNORECASE | re.MULTILINE)
    if cut:
        text = text[:cut.start()]
    head = re.search(re.escape(RESPONSE_HEAD), text, re.IGNORECASE)
    if head:
        text = text[head.end():]
    names = {v.lower(): k for k, v in LABELS.items()}
    found: dict[str, str] = {}
    matches = list(_LABEL_RE.finditer(text))
    for m, nxt in zip(matches, matches[1:] + [None]):
        key = names[m.group(1).lower()]
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        if key in expected and key not in found:
            found[key] = body
    if any(not found.get(k, "").strip() for k in expected):
        return None
    return {k: found[k] for k in expected}


def pick_examples(pool: list[dict[str, str]], k: int, rng: random.Random, max_chars: int = 600) -> list[dict[str, str]]:
    """k random passing samples, each field cut to `max_chars` so the prompt stays within small models' context."""
    if not pool or k <= 0:
        return []
    chosen = rng.sample(pool, min(k, len(pool)))
    return [{n: (v if len(v) <= max_chars else v[:max_chars].rsplit(" ", 1)[0] + " ...") for n, v in ex.items()}
            for ex in chosen]


def format_for(backend: GenerationBackend, body: str, job: RewriteJob) -> str:
    from damoc.models import format_prompt

    framed = format_prompt(backend.tokenizer, body)
    return framed + ("" if framed.endswith(("\n", " ")) else "\n") + primer(job)
