"""Fields as token streams grouped into deletable units, and text rebuilt from the units that survive.

Token-level deletion (LLMLingua) fuses word pieces ("Fuel Dilution" -> "uedil", microsoft/LLMLingua#149) and, with
byte-level BPE, can split a multi-byte character. With `granularity="word"` (our default) the scores are still per
token, but a word's tokens are kept or dropped together (the word's score is the mean of its token scores, as
LLMLingua-2's `token_to_word="mean"`), and the text is rebuilt from the original characters, so every kept word is
spelled exactly as in the source. `granularity="token"` deletes single tokens like the paper's reference code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# One "word" = a run of non-space characters, except CJK/kana/hangul characters, which are words on their own
# (those scripts do not separate words with spaces; a whole sentence must not become one undeletable unit).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")


@dataclass
class Unit:
    """Tokens [start, end) of a field that are kept or dropped together; chars [cs, ce) of the field text."""

    start: int
    end: int
    cs: int
    ce: int
    forced: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class FieldTokens:
    name: str
    text: str
    ids: list[int]
    units: list[Unit]
    by_chars: bool                 # True: rebuild from character spans; False: decode the kept token ids
    protected: bool = False        # never compressed (template instruction, multiple-choice answer)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def kept_ids(self, keep: list[bool]) -> list[int]:
        out: list[int] = []
        for u, k in zip(self.units, keep):
            if k:
                out.extend(self.ids[u.start:u.end])
        return out

    def kept_tokens(self, keep: list[bool]) -> int:
        return sum(u.size for u, k in zip(self.units, keep) if k)


def _offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]] | None]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError, KeyError):   # slow tokenizers have no offsets
        return list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]), None


def tokenize_field(tokenizer: Any, name: str, text: str, *, granularity: str = "word",
                   force: re.Pattern[str] | None = None, protected: bool = False) -> FieldTokens:
    """Tokenise one field (no special tokens) and group its tokens into units."""
    if not text:
        return FieldTokens(name, text, [], [], True, protected)
    ids, offsets = _offsets(tokenizer, text)
    if offsets is None or len(offsets) != len(ids):
        units = [Unit(i, i + 1, 0, 0) for i in range(len(ids))]
        ft = FieldTokens(name, text, ids, units, False, protected)
        if force is not None:
            for u in units:
                u.forced = bool(force.search(tokenizer.decode(ids[u.start:u.end])))
        return ft
    if granularity == "token":
        units = [Unit(i, i + 1, s, e) for i, (s, e) in enumerate(offsets)]
        by_chars = False
    else:
        units = _split_long(_word_units(text, offsets), text, offsets)
        by_chars = True
    if force is not None:
        for u in units:
            u.forced = bool(force.search(text[u.cs:u.ce] if by_chars else tokenizer.decode(ids[u.start:u.end])))
    return FieldTokens(name, text, ids, units, by_chars, protected)


def _word_units(text: str, offsets: list[tuple[int, int]]) -> list[Unit]:
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    if not words:                                   # whitespace only: one unit holding every token
        return [Unit(0, len(offsets), 0, len(text))] if offsets else []
    starts = [w[0] for w in words]

    def word_at(pos: int) -> int:
        """Index of the word containing `pos`, or of the first word after it."""
        import bisect
        i = bisect.bisect_right(starts, pos) - 1
        if i >= 0 and pos < words[i][1]:
            return i
        return min(i + 1, len(words) - 1)

    # word range [a, b] touched by each token; whitespace-only tokens belong to the word that follows them
    ranges: list[tuple[int, int]] = []
    for s, e in offsets:
        if e <= s:
            ranges.append((-1, -1))                 # zero-width (e.g. a special token): joins its neighbour
            continue
        frag = text[s:e]
        lead = len(frag) - len(frag.lstrip())
        if lead == len(frag):                       # pure whitespace token ("\n", "Ġ")
            a = word_at(e) if e < len(text) else len(words) - 1
            ranges.append((a, a))
            continue
        a = word_at(s + lead)
        b = word_at(e - 1)
        ranges.append((a, max(a, b)))
    # fill zero-width tokens from the previous token (or the next one at the start)
    for i, r in enumerate(ranges):
        if r[0] < 0:
            prev = next((ranges[j] for j in range(i - 1, -1, -1) if ranges[j][0] >= 0), None)
            nxt = next((ranges[j] for j in range(i + 1, len(ranges)) if ranges[j][0] >= 0), (0, 0))
            ranges[i] = (prev[1], prev[1]) if prev else (nxt[0], nxt[0])
    # group consecutive tokens into units: a new unit starts when a token starts past the current unit's words
    units: list[Unit] = []
    cur_a, cur_b, cur_start = ranges[0][0], ranges[0][1], 0
    for i in range(1, len(ranges)):
        a, b = ranges[i]
        if a > cur_b:
            units.append(Unit(cur_start, i, words[cur_a][0], words[cur_b][1]))
            cur_a, cur_b, cur_start = a, b, i
        else:
            cur_b = max(cur_b, b)
    units.append(Unit(cur_start, len(ranges), words[cur_a][0], words[cur_b][1]))
    return units


MAX_UNIT_TOKENS = 24


def _split_long(units: list[Unit], text: str, offsets: list[tuple[int, int]]) -> list[Unit]:
    """A "word" of many tokens (a URL, a base64 blob, a long chemical name) is split back into tokens so one unit
    can never swallow a window's whole budget."""
    out: list[Unit] = []
    for u in units:
        if u.size <= MAX_UNIT_TOKENS:
            out.append(u)
            continue
        for i in range(u.start, u.end):
            s, e = offsets[i]
            frag = text[s:e]
            s += len(frag) - len(frag.lstrip())
            out.append(Unit(i, i + 1, max(s, u.cs), max(min(e, u.ce), max(s, u.cs))))
    return out


def rebuild(ft: FieldTokens, keep: list[bool], tokenizer: Any) -> str:
    """The compressed text of a field from the units that survive."""
    if not ft.units:
        return ft.text
    if all(keep):
        return ft.text
    if not ft.by_chars:
        return tokenizer.decode(ft.kept_ids(keep), skip_special_tokens=True,
                                clean_up_tokenization_spaces=False).strip()
    parts: list[str] = []
    prev_end: int | None = None
    for u, k in zip(ft.units, keep):
        if not k:
            continue
        if prev_end is not None:
            # what separated the kept words in the source, dropped words included: a line break stays a line
            # break, other whitespace becomes one space, none (CJK, a split word) stays none
            gap = ft.text[prev_end:u.cs]
            parts.append("\n" if "\n" in gap else (" " if any(c.isspace() for c in gap) else ""))
        parts.append(ft.text[u.cs:u.ce])
        prev_end = u.ce
    return "".join(parts)


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else 0
