"""The generation-backend interface and the tokenisation rules every stage shares.

Light module (no torch at import time): the compression, filter, fine-tune and evaluation stages import the helpers
here so that a prompt is tokenised the same way when a model is trained on it and when it is scored or generated.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from damoc.plugins import Plugin, Registry


class GenerationBackend(Plugin, ABC):
    """What every backend offers: `class TransformersBackend(GenerationBackend, name="transformers")` registers it
    in `BACKENDS` (metadata in the index of `damoc.backends`). Prompts are already formatted
    (`damoc.models.format_prompt`)."""

    tokenizer: Any

    @classmethod
    def registry(cls) -> Registry[Any]:
        return BACKENDS

    @property
    def max_length(self) -> int | None:
        """The model's context in tokens, when the backend knows it (the rewriter sizes its prompts by it)."""
        return None

    @abstractmethod
    def generate(self, prompts: list[str], *, max_new_tokens: int = 64, stop: list[str] | None = None,
                 batch_size: int | None = None) -> list[str]:
        """Greedy continuations, one per prompt, in input order, cut before the first stop string (EOS always
        stops). The text is returned as decoded (not stripped)."""

    @abstractmethod
    def loglikelihood(self, contexts: list[str], continuations: list[str], *,
                      batch_size: int | None = None) -> list[tuple[float, int]]:
        """Teacher-forced (sum log-prob of the continuation tokens given the context, number of those tokens)."""

    @abstractmethod
    def close(self) -> None:
        """Free the model (and GPU memory). The backend is unusable afterwards."""


BACKENDS: Registry[type[GenerationBackend]] = Registry("backend", GenerationBackend)
"""The backends, indexed lazily in `damoc.backends` (nothing heavy is imported until one is built)."""


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a formatted prompt.

    Tokenizers that add a BOS (Llama, Gemma) get it once: chat templates already write it into the text, and adding
    it again would shift the model off its training distribution. Every stage uses this rule, so training and
    inference see identical prompt tokens.
    """
    bos = getattr(tokenizer, "bos_token", None)
    already = bool(bos) and text.startswith(bos)
    return list(tokenizer(text, add_special_tokens=not already)["input_ids"])


def continuation_text(prompt: str, answer: str) -> str:
    """The answer as it follows the prompt: a space after the plain `Answer:` frame (the byte-level BPE then
    tokenises `" word"` exactly as in running text), nothing after a chat template's assistant header."""
    answer = answer.strip()
    if not prompt or prompt[-1].isspace() or not answer:
        return answer
    return " " + answer


def continuation_ids(tokenizer: Any, prompt: str, answer: str) -> list[int]:
    """Answer tokens, tokenised separately from the prompt (zoo-spike.md: matches joint tokenisation with a
    byte-level pre-tokenizer and keeps the prompt/answer boundary exact for loss masking)."""
    text = continuation_text(prompt, answer)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Text before the earliest stop string."""
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def eos_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every id that ends a turn: the tokenizer's EOS plus the model's generation-config EOS (chat models often
    end turns with a different token, e.g. `<|im_end|>`)."""
    ids: list[int] = []
    for src in (getattr(getattr(model, "generation_config", None), "eos_token_id", None),
                getattr(tokenizer, "eos_token_id", None)):
        if src is None:
            continue
        for i in (src if isinstance(src, (list, tuple)) else [src]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def answer_loglik(backend: GenerationBackend, prompts: list[str], answers: list[str], *,
                  batch_size: int | None = None) -> list[tuple[float, int]]:
    """`backend.loglikelihood` with each answer framed exactly as the fine-tune frames it."""
    return backend.loglikelihood(prompts, [continuation_text(p, a) for p, a in zip(prompts, answers)],
                                 batch_size=batch_size)
