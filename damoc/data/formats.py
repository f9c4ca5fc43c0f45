"""Record shapes ("formats") and their normalisation into `Sample`.

Detected from the keys of the first records; `--format` overrides. Each normaliser raises `FieldProblem` naming
the field at fault.
"""
from __future__ import annotations

import json
import math
import re
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


class Excluded(Exception):
    """A well-formed record that damoc leaves out by design (KTO's undesirable examples); counted, not an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(rec: Mapping[str, Any], key: str) -> str:
    v = rec.get(key)
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        raise FieldProblem(key, f"{v!r} is not a value", "write the value as text (or null when missing)")
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


def _choice_index(raw: Any, choices: list[str]) -> int:
    """The right choice from an index (int, an integral float as pandas writes, ASCII digits), a letter or the
    choice's text."""
    if isinstance(raw, bool) or raw is None:
        raise FieldProblem("answer", "missing answer", "give the index, the letter or the text of the right choice")
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        t = raw.strip()
        if re.fullmatch(r"[0-9]{1,6}", t):          # ASCII only: str.isdigit() is true for '²', which int() refuses
            return int(t)
        if len(t) == 1 and t.upper() in LETTERS and len(t.upper()) == 1:
            return LETTERS.index(t.upper())
        if raw in choices:
            return choices.index(raw)
        if t in choices:
            return choices.index(t)
    raise FieldProblem("answer", f"answer {raw!r} is not an index, a letter or one of the choices",
                       "give the index (0-based), the letter (A, B, ...) or the text of the right choice")


def multiple_choice(rec: Mapping[str, Any], idx: str) -> Sample:
    question = _text(rec, "question")
    if not question.strip():
        raise FieldProblem("question", "missing question")
    ckey = "choices" if rec.get("choices") is not None else "options"
    choices = rec.get(ckey)
    if isinstance(choices, Mapping):            # {"A": "...", "B": "..."}
        choices = [choices[k] for k in sorted(choices, key=str)]
    if not isinstance(choices, list) or len(choices) < 2:
        raise FieldProblem(ckey, "expected a list of at least 2 choices")
    if len(choices) > len(LETTERS):
        raise FieldProblem(ckey, f"{len(choices)} choices; at most {len(LETTERS)} are supported")
    for i, c in enumerate(choices):
        if not isinstance(c, (str, int, float)) or isinstance(c, bool) or (isinstance(c, float)
                                                                          and not math.isfinite(c)):
            raise FieldProblem(f"{ckey}[{i}]", f"a choice must be text, got {type(c).__name__}")
    choices = [str(c) for c in choices]
    akey = "answer" if "answer" in rec else "label"
    try:
        index = _choice_index(rec.get(akey), choices)
    except FieldProblem as e:
        raise FieldProblem(akey, e.message, e.hint) from None
    if not 0 <= index < len(choices):
        raise FieldProblem(akey, f"answer index {index} outside the {len(choices)} choices")
    used = {"question", "choices", "options", "answer", "label"}
    extra = _extra(rec, used)
    extra["answer_index"] = index
    return Sample(id=idx, instruction=_text(rec, "instruction"), question=question, answer=choices[index],
                  choices=choices, extra=extra, raw=dict(rec))


_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "chatgpt": "assistant", "system": "system", "developer": "system",
         # tool use: LLaMA-Factory's sharegpt roles, OpenAI's, Llama 3's
         "function_call": "tool_call", "tool_call": "tool_call", "observation": "tool", "tool": "tool",
         "function": "tool", "ipython": "tool"}
_LABEL = {"user": "User", "assistant": "Assistant", "tool_call": "Tool call", "tool": "Tool result"}
MEDIA_PARTS = ("image", "image_url", "input_image", "audio", "input_audio", "video", "video_url", "file")


def _as_text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _content(t: Mapping[str, Any], where: str) -> str | None:
    """A turn's text: a string, or a list of typed parts (OpenAI writes `{"type": "text", "text": ...}`,
    LLaMA-Factory v1 `{"type": "text", "value": ...}`); an assistant's `tool_calls` are the call's text."""
    content = t.get("content", t.get("value"))
    if isinstance(content, Mapping):
        content = [content]
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, str):
                texts.append(part)
                continue
            if not isinstance(part, Mapping):
                raise FieldProblem(f"{where}.content[{j}]", "content part is not an object")
            kind = str(part.get("type", "text"))
            if kind in MEDIA_PARTS:
                raise FieldProblem(f"{where}.content[{j}]", f"an {kind} part: damoc reads text only",
                                   "drop the media parts, or pick a text dataset")
            value = part.get("text", part.get("value", part.get("content")))
            if value is None:
                raise FieldProblem(f"{where}.content[{j}]", f"{kind} part without text/value")
            texts.append(_as_text(value))
        content = "".join(texts)
    calls = t.get("tool_calls") or t.get("function_call")
    if calls:
        call_text = _as_text(calls)
        content = f"{content}\n{call_text}" if isinstance(content, str) and content.strip() else call_text
    return content if isinstance(content, str) else None


def _turns(turns: Any, key: str) -> list[tuple[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise FieldProblem(key, "expected a non-empty list of turns")
    norm: list[tuple[str, str]] = []
    for i, t in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(t, Mapping):
            raise FieldProblem(where, "turn is not an object")
        raw_role = t.get("role", t.get("from", ""))
        role = _ROLE.get(str(raw_role).lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise FieldProblem(where, f"unknown role {raw_role!r}" if raw_role else "turn needs a role (or from)",
                               f"roles: {', '.join(sorted(set(_ROLE)))}")
        if role == "assistant" and (t.get("tool_calls") or t.get("function_call")):
            role = "tool_call"
        content = _content(t, where)
        if content is None:
            raise FieldProblem(where, "turn needs content (or value): text or a list of text parts")
        norm.append((role, content))
    return norm


def _transcript(dialog: list[tuple[str, str]]) -> str:
    """The turns before the answer as the prompt: a single user turn as it is, a longer exchange (earlier turns,
    tool calls and their results) labelled turn by turn, as a chat template lays it out."""
    if len(dialog) == 1 and dialog[0][0] == "user":
        return dialog[0][1]
    return "\n\n".join(f"{_LABEL[r]}: {c}" for r, c in dialog)


def _system(rec: Mapping[str, Any], norm: list[tuple[str, str]]) -> str:
    parts = [c for r, c in norm if r == "system"]
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        parts.insert(0, rec["system"])
    tools = rec.get("tools")
    if tools not in (None, "", []):
        parts.append("Tools available:\n" + _as_text(tools))
    return "\n\n".join(parts)


def conversation(rec: Mapping[str, Any], idx: str) -> Sample:
    """A chat: the final assistant turn is the answer; the turns before it (earlier exchanges, tool calls and
    tool results) are the prompt; system turns (and a `system`/`tools` column) are the instruction."""
    key = "messages" if "messages" in rec else "conversations"
    norm = _turns(rec.get(key), key)
    dialog = [(r, c) for r, c in norm if r != "system"]
    answers = [i for i, (r, _) in enumerate(dialog) if r == "assistant"]
    users = [i for i, (r, _) in enumerate(dialog) if r == "user"]
    if not answers or not users or answers[-1] < users[0]:
        raise FieldProblem(key, "missing answer: no assistant turn after a user turn")
    a = answers[-1]
    # the answer's index among the original turns, for the field name
    _need_answer(dialog[a][1], f"{key}[{_nth(norm, a)}]", (key,))
    extra = _extra(rec, {key, "system", "tools"})
    if len(norm) > 2 or rec.get("tools"):
        extra["conversation"] = [{"role": r, "content": c} for r, c in norm]
    if rec.get("tools") not in (None, ""):
        extra["tools"] = rec["tools"]
    return Sample(id=idx, instruction=_system(rec, norm), question=_transcript(dialog[:a]), answer=dialog[a][1],
                  extra=extra, raw=dict(rec))


def _nth(norm: list[tuple[str, str]], dialog_index: int) -> int:
    """The index in `norm` (system turns included) of the dialog's turn `dialog_index`."""
    seen = -1
    for i, (r, _) in enumerate(norm):
        if r != "system":
            seen += 1
            if seen == dialog_index:
                return i
    return dialog_index


def _response(v: Any, key: str) -> tuple[list[tuple[str, str]], str]:
    """A preference response: text, one assistant turn, or a whole conversation ending in it (TRL's
    conversational format). Returns the turns before the response (may be empty) and its text."""
    if isinstance(v, str):
        if not v.strip():
            raise FieldProblem(key, f"empty {key} response")
        return [], v
    if isinstance(v, Mapping):
        v = [v]
    if isinstance(v, list) and v:
        turns = _turns([{"role": "assistant", **t} if isinstance(t, Mapping) and not ("role" in t or "from" in t)
                        else t for t in v], key)
        if turns[-1][0] != "assistant" or not turns[-1][1].strip():
            raise FieldProblem(key, f"the {key} response must end with a non-empty assistant turn")
        return turns[:-1], turns[-1][1]
    raise FieldProblem(key, f"expected the {key} response as text or turns, got {type(v).__name__}")


def preference(rec: Mapping[str, Any], idx: str) -> Sample:
    """Preference (DPO/ORPO/SimPO) data: a prompt, a chosen and a rejected response. damoc ranks models by
    supervised fine-tuning, so it trains and evaluates on the prompt and the *chosen* response; the rejected one
    is kept in `extra` and not used."""
    before, chosen = _response(rec.get("chosen"), "chosen")
    key = "messages" if "messages" in rec else "conversations" if "conversations" in rec else None
    if key is not None:
        norm = _turns(rec.get(key), key) + before
    elif before:
        norm = before
    else:
        qkey, q = _first(rec, ("prompt", "question", "instruction", "query"))
        ckey, ctx = _first(rec, ("input", "context"))
        if not q.strip():
            raise FieldProblem("prompt", "preference record without a prompt")
        norm = [("user", "\n".join(t for t in (q, ctx) if t.strip()))]
    dialog = [(r, c) for r, c in norm if r != "system"]
    if not dialog or not any(r == "user" for r, _ in dialog):
        raise FieldProblem(key or "prompt", "preference record without a user turn before the chosen response")
    extra = _extra(rec, {key or "", "chosen", "system", "tools", "prompt", "question", "instruction", "query",
                         "input", "context"})
    if isinstance(rec.get("rejected"), Mapping):
        extra["rejected"] = _content(rec["rejected"], "rejected")
    return Sample(id=idx, instruction=_system(rec, norm), question=_transcript(dialog), answer=chosen, extra=extra,
                  raw=dict(rec))


def kto(rec: Mapping[str, Any], idx: str) -> Sample:
    """KTO data: single responses labelled desirable (true) or not. damoc fine-tunes on the desirable ones and
    leaves the others out (training a proxy on answers marked bad would rank models on the wrong target)."""
    label = rec.get("label", rec.get("kto_tag"))
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        label = label.strip().lower() == "true"
    if not isinstance(label, bool):
        raise FieldProblem("label", f"KTO label must be true or false, got {label!r}")
    if not label:
        raise Excluded("KTO examples labelled undesirable (label false) are left out")
    body = {k: v for k, v in rec.items() if k not in ("label", "kto_tag")}
    if "messages" in body or "conversations" in body:
        return conversation(body, idx).with_fields(raw=dict(rec))
    return qa({**body, "answer": body.get("completion", body.get("answer"))}, idx).with_fields(raw=dict(rec))


FORMATS: dict[str, Callable[[Mapping[str, Any], str], Sample]] = {
    "alpaca": alpaca,
    "qa": qa,
    "mc": multiple_choice,
    "sharegpt": conversation,
    "messages": conversation,
    "preference": preference,
    "kto": kto,
}
FORMAT_HELP = {
    "alpaca": "instruction / input / output",
    "qa": "question (or instruction) / answer, optional context",
    "mc": "question / choices / answer (index, letter or text)",
    "sharegpt": "conversations: [{from, value}]",
    "messages": "messages: [{role, content}]",
    "preference": "a prompt or conversation with chosen / rejected responses (DPO)",
    "kto": "messages or prompt/completion with a true/false label (KTO)",
}
# What damoc does with data that is not plain SFT data (said once per load by `load_samples`).
FORMAT_NOTES = {
    "preference": "preference (DPO) data: damoc fine-tunes and evaluates on the chosen responses; the rejected "
                  "ones are not used",
    "kto": "KTO data: damoc fine-tunes and evaluates on the examples labelled desirable (label true)",
}


def detect(records: list[Mapping[str, Any]]) -> str | None:
    """The format that fits most of the first records, or None."""
    votes: dict[str, int] = {}
    for rec in records:
        keys = set(rec)
        if "chosen" in keys and "rejected" in keys:
            f = "preference"
        elif isinstance(rec.get("label", rec.get("kto_tag")), bool) and keys & {"messages", "conversations",
                                                                                 "completion"}:
            f = "kto"
        elif "messages" in keys:
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
