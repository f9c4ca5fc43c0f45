"""Record shapes ("formats") and their normalisation into `Sample`.

Detected from the keys of the first records; `--format` overrides. Each normaliser raises `FieldProblem` naming
the field at fault.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from damoc.data.sample import Sample

QUESTION_KEYS = ("question", "query", "prompt")
CONTEXT_KEYS = ("context", "input", "passage", "document")
ANSWER_KEYS = ("answer", "output", "response", "completion", "target")
LETTERS = "ABCDEFGHIJ"


class FieldProblem(ValueError):
    def __init__(self, field: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.field, self.message, self.hint = field, message, hint


def _text(rec: Mapping[str, Any], key: str) -> str:
    v = rec.get(key)
    if v is None:
        return ""
    if isinstance(v, (str, int, float, bool)):
        return str(v)
    raise FieldProblem(key, f"expected text, got {type(v).__name__}")


def _first(rec: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str | None, str]:
    for k in keys:
        if k in rec and rec[k] is not None:
            return k, _text(rec, k)
    return None, ""


def _extra(rec: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in used and k != "id"}


def _need_answer(answer: str, key: str | None, keys: tuple[str, ...]) -> None:
    if not answer.strip():
        field = key or "/".join(keys)
        raise FieldProblem(field, "missing answer" if key is None else "empty answer",
                           "every sample needs a non-empty answer; fix the record or pass --skip-bad")


def alpaca(rec: Mapping[str, Any], idx: str) -> Sample:
    if not _text(rec, "instruction").strip() and not _text(rec, "input").strip():
        raise FieldProblem("instruction", "empty instruction and input")
    akey, answer = _first(rec, ("output", "response", "answer"))
    _need_answer(answer, akey, ("output",))
    used = {"instruction", "input", akey or ""}
    return Sample(id=idx, instruction=_text(rec, "instruction"), context=_text(rec, "input"), answer=answer,
                  extra=_extra(rec, used), raw=dict(rec))


def qa(rec: Mapping[str, Any], idx: str) -> Sample:
    qkey, question = _first(rec, QUESTION_KEYS)
    instruction = _text(rec, "instruction")
    if not question.strip() and not instruction.strip():
        raise FieldProblem(qkey or "question", "missing question")
    ckey, context = _first(rec, CONTEXT_KEYS)
    akey, answer = _first(rec, ANSWER_KEYS)
    _need_answer(answer, akey, ("answer",))
    used = {"instruction", qkey or "", ckey or "", akey or ""}
    if instruction.strip() == question.strip():      # exports that copy the question into `instruction`
        instruction = ""
    return Sample(id=idx, instruction=instruction, question=question, context=context, answer=answer,
                  extra=_extra(rec, used), raw=dict(rec))


def multiple_choice(rec: Mapping[str, Any], idx: str) -> Sample:
    question = _text(rec, "question")
    if not question.strip():
        raise FieldProblem("question", "missing question")
    choices = rec.get("choices") or rec.get("options")
    if isinstance(choices, Mapping):            # {"A": "...", "B": "..."}
        choices = [choices[k] for k in sorted(choices)]
    if not isinstance(choices, list) or len(choices) < 2:
        raise FieldProblem("choices", "expected a list of at least 2 choices")
    choices = [str(c) for c in choices]
    raw = rec.get("answer", rec.get("label"))
    if isinstance(raw, bool) or raw is None:
        raise FieldProblem("answer", "missing answer", "give the index, the letter or the text of the right choice")
    if isinstance(raw, int) or (isinstance(raw, str) and raw.strip().isdigit()):
        index = int(raw)
    elif isinstance(raw, str) and len(raw.strip()) == 1 and raw.strip().upper() in LETTERS:
        index = LETTERS.index(raw.strip().upper())
    elif isinstance(raw, str) and raw in choices:
        index = choices.index(raw)
    else:
        raise FieldProblem("answer", f"answer {raw!r} is not an index, a letter or one of the choices")
    if not 0 <= index < len(choices):
        raise FieldProblem("answer", f"answer index {index} outside the {len(choices)} choices")
    used = {"question", "choices", "options", "answer", "label"}
    extra = _extra(rec, used)
    extra["answer_index"] = index
    return Sample(id=idx, instruction=_text(rec, "instruction"), question=question, answer=choices[index],
                  choices=choices, extra=extra, raw=dict(rec))


_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "chatgpt": "assistant", "system": "system"}


def conversation(rec: Mapping[str, Any], idx: str) -> Sample:
    key = "messages" if "messages" in rec else "conversations"
    turns = rec.get(key)
    if not isinstance(turns, list) or not turns:
        raise FieldProblem(key, "expected a non-empty list of turns")
    norm: list[tuple[str, str]] = []
    for i, t in enumerate(turns):
        if not isinstance(t, Mapping):
            raise FieldProblem(f"{key}[{i}]", "turn is not an object")
        role = _ROLE.get(str(t.get("role", t.get("from", ""))).lower())
        content = t.get("content", t.get("value"))
        if role is None or not isinstance(content, str):
            raise FieldProblem(f"{key}[{i}]", "turn needs role/content (or from/value)")
        norm.append((role, content))
    system = "\n".join(c for r, c in norm if r == "system")
    dialog = [(r, c) for r, c in norm if r != "system"]
    try:
        u = next(i for i, (r, _) in enumerate(dialog) if r == "user")
        a = next(i for i, (r, _) in enumerate(dialog) if r == "assistant" and i > u)
    except StopIteration:
        raise FieldProblem(key, "missing answer: no assistant turn after a user turn") from None
    _need_answer(dialog[a][1], f"{key}[{a}]", (key,))
    extra = _extra(rec, {key})
    if len(dialog) > a + 1:
        extra["conversation"] = [{"role": r, "content": c} for r, c in norm]
    return Sample(id=idx, instruction=system, question=dialog[u][1], answer=dialog[a][1], extra=extra, raw=dict(rec))


FORMATS: dict[str, Callable[[Mapping[str, Any], str], Sample]] = {
    "alpaca": alpaca,
    "qa": qa,
    "mc": multiple_choice,
    "sharegpt": conversation,
    "messages": conversation,
}
FORMAT_HELP = {
    "alpaca": "instruction / input / output",
    "qa": "question (or instruction) / answer, optional context",
    "mc": "question / choices / answer (index, letter or text)",
    "sharegpt": "conversations: [{from, value}]",
    "messages": "messages: [{role, content}]",
}


def detect(records: list[Mapping[str, Any]]) -> str | None:
    """The format that fits most of the first records, or None."""
    votes: dict[str, int] = {}
    for rec in records:
        keys = set(rec)
        if "messages" in keys:
            f = "messages"
        elif "conversations" in keys:
            f = "sharegpt"
        elif "choices" in keys or "options" in keys:
            f = "mc"
        elif "instruction" in keys and keys & {"output", "response"} and not keys & set(QUESTION_KEYS):
            f = "alpaca"
        elif keys & (set(QUESTION_KEYS) | {"instruction"}) and keys & set(ANSWER_KEYS):
            f = "qa"
        elif keys & (set(QUESTION_KEYS) | {"instruction"}):
            f = "qa"          # answers missing: let the normaliser name the field
        else:
            continue
        votes[f] = votes.get(f, 0) + 1
    return max(votes, key=votes.__getitem__) if votes else None
