"""The one sample type every stage works on."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class Sample:
    """A normalised training/test example.

    `instruction` is the task statement, `question` a question (QA shapes), `context` supporting text (alpaca's
    `input`, a passage), `answer` the target response. `choices` is set for multiple-choice data (the answer is then
    the text of the correct choice and `extra["answer_index"]` its index). `extra` keeps every other field of the
    source record; `raw` is the untouched source record (so a subset can be written back in its own format).
    """

    id: str
    instruction: str = ""
    question: str = ""
    context: str = ""
    answer: str = ""
    choices: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def prompt(self) -> str:
        """The user turn: instruction, question and context joined by blank lines (empty parts omitted)."""
        parts = [p for p in (self.instruction, self.question, self.context) if p and p.strip()]
        text = "\n\n".join(parts)
        if self.choices:
            letters = "ABCDEFGHIJ"
            text += "\n" + "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(self.choices))
        return text

    @property
    def references(self) -> list[str]:
        """Every acceptable answer (SQuAD-style `answers` lists included), the main answer first."""
        refs = [self.answer] if self.answer else []
        extra = self.extra.get("answers")
        if isinstance(extra, dict):                    # SQuAD's {"text": [...], "answer_start": [...]}
            extra = extra.get("text")
        if isinstance(extra, list):
            for a in extra:
                a = a.get("text") if isinstance(a, dict) else a
                if isinstance(a, str) and a and a not in refs:
                    refs.append(a)
        return refs

    def with_fields(self, **changes: Any) -> "Sample":
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """The normalised record (what damoc writes for derived datasets)."""
        rec: dict[str, Any] = {"id": self.id}
        for k in ("instruction", "question", "context", "answer"):
            if getattr(self, k):
                rec[k] = getattr(self, k)
        if self.choices is not None:
            rec["choices"] = list(self.choices)
        for k, v in self.extra.items():
            rec.setdefault(k, v)
        return rec
