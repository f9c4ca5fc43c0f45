"""Training features: prompt framing, answer-only labels, EOS, truncation, padding (tokenizer only, no torch at
import time)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from damoc.backends.base import continuation_ids, prompt_ids
from damoc.errors import DataError

IGNORE_INDEX = -100        # labels the loss skips (torch CrossEntropyLoss's ignore_index)


@dataclass
class Feature:
    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    answer_tokens: int        # answer + EOS


def frame_prompt(tokenizer: Any, sample: Any, chat: bool | None = None) -> str:
    from damoc.models import format_prompt

    return format_prompt(tokenizer, sample.prompt, chat=chat)


def encode_sample(tokenizer: Any, sample: Any, *, max_length: int = 512, chat: bool | None = None,
                  eos_id: int | None = None, answer_budget: Literal["rest", "half"] = "rest") -> Feature:
    """One sample to (input ids, labels): the prompt's labels are IGNORE_INDEX, so the loss covers the answer and
    the EOS that teaches the model to stop. Too long: the prompt loses tokens from its start (the question sits at
    its end) and the answer is cut to its budget, ending in EOS: "rest" = what the prompt leaves, at least half of
    `max_length` (the fine-tune); "half" = at most half (the filters' warm-ups and gradients, where the prompt the
    score is conditioned on keeps the other half)."""
    prompt = frame_prompt(tokenizer, sample, chat)
    p_ids = prompt_ids(tokenizer, prompt)
    a_ids = continuation_ids(tokenizer, prompt, sample.answer)
    eos = tokenizer.eos_token_id if eos_id is None else eos_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token", "set tokenizer.eos_token before fine-tuning")
    a_ids = a_ids + [eos]
    if len(p_ids) + len(a_ids) > max_length:
        half = max(1, max_length // 2)
        a_ids = a_ids[:half if answer_budget == "half" else max(half, max_length - len(p_ids))]
        if a_ids[-1] != eos:
            a_ids[-1] = eos
        p_ids = p_ids[len(p_ids) - (max_length - len(a_ids)):] if max_length > len(a_ids) else []
    return Feature(input_ids=p_ids + a_ids, labels=[IGNORE_INDEX] * len(p_ids) + a_ids,
                   prompt_tokens=len(p_ids), answer_tokens=len(a_ids))


def encode_samples(tokenizer: Any, samples: Sequence[Any], *, max_length: int = 512,
                   chat: bool | None = None) -> list[Feature]:
    missing = [s.id for s in samples if not (s.answer or "").strip()]
    if missing:
        raise DataError(f"{len(missing)} training sample(s) have no answer (first: {missing[0]!r})",
                        "fine-tuning needs an answer per sample; drop them or fix the dataset")
    return [encode_sample(tokenizer, s, max_length=max_length, chat=chat) for s in samples]


class Collator:
    """Right-pads a micro batch; pads labels with IGNORE_INDEX. Counts the tokens it hands to the model.

    `trim_prompt`: the LM head and the loss only run where a label follows, from the batch's first answer token on
    (`logits_to_keep` = the last width - k positions, labels cut to the same positions). The loss and every gradient
    are those of the untrimmed batch (the cut positions carry IGNORE_INDEX labels only); the prompt's logits over a
    150k vocabulary are not computed, stored or differentiated."""

    def __init__(self, pad_id: int, multiple_of: int = 1, trim_prompt: bool = False) -> None:
        self.pad_id, self.multiple_of, self.trim_prompt = pad_id, multiple_of, trim_prompt
        self.tokens_seen = 0

    def __call__(self, batch: list[Feature]) -> dict[str, Any]:
        import torch

        width = max(len(f.input_ids) for f in batch)
        if self.multiple_of > 1:           # tensor cores like multiples of 8 on GPU
            width = -(-width // self.multiple_of) * self.multiple_of
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, f in enumerate(batch):
            n = len(f.input_ids)
            ids[r, :n] = torch.tensor(f.input_ids)
            labels[r, :n] = torch.tensor(f.labels)
            mask[r, :n] = 1
        self.tokens_seen += int(mask.sum())
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        # logits at position j predict token j + 1: the first answer token p needs the logits of p - 1
        k = min(f.prompt_tokens for f in batch) - 1
        if self.trim_prompt and k > 0:
            out["labels"] = labels[:, k:].contiguous()
            out["logits_to_keep"] = width - k
        return out
