"""The compression configuration (what callers build) and result (what they get back)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from damoc.errors import ConfigError

FIELDS = ("instruction", "question", "context", "answer")
PROMPT_FIELDS = ("instruction", "question", "context")


_SECTION_RATE = 0.5
_SECTION_METHOD = "damoc"


class CompressParams(BaseModel):
    """The run config's `compress` section: token compression of the filtered samples (question-conditioned
    perplexity + BERTScore gate, Eq. 1-2). `to_config` builds the module's `CompressConfig` from it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = True
    rate: float = Field(_SECTION_RATE, gt=0, le=1, description="target fraction of tokens kept")
    method: str = Field(_SECTION_METHOD, description="compressor of damoc.compress.COMPRESSORS (damoc, llmlingua, ...)")
    model: str = Field("", description="registry name or model folder of the small LM that scores tokens; "
                                       "empty = the smallest candidate of the run")
    rewriter: str = Field("", description="registry name or folder of the LM that rewrites samples failing the "
                                          "BERTScore gate; empty = no rewriting (they keep their original text)")
    threshold: float | None = Field(None, description="BERTScore F1 gate; None = the encoder's equivalent of the "
                                                      "paper's 0.9")
    params: dict[str, Any] = Field(default_factory=dict)

    def to_config(self, *, model_path: str, rewriter_path: str | None = None,
                  device: str | None = None) -> "CompressConfig":
        """`CompressConfig` with the resolved model folders; `params` are further `CompressConfig` fields."""
        known = {f.name for f in dataclasses.fields(CompressConfig)}
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ConfigError(f"compress.params: CompressConfig has no setting(s) {', '.join(unknown)}",
                              f"known: {', '.join(sorted(known))}")
        values: dict[str, Any] = {"rate": self.rate, "compressor": self.method or _SECTION_METHOD,
                                  "model": model_path, "threshold": self.threshold, "rewriter": rewriter_path,
                                  "device": device}
        try:
            return CompressConfig(**{**values, **self.params})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"compress: {e}", "check compress.params in the run config") from None


@dataclass
class CompressConfig:
    """How to compress a dataset.

    rate: share of tokens kept (0 < rate <= 1), over the fields that are compressed; `rates` overrides it per field
    (keys: instruction, question, context, answer).
    compressor: method name in `COMPRESSORS` (damoc, llmlingua, longllmlingua).
    model: the small causal LM that scores tokens: registry candidate name or model folder.
    threshold: BERTScore F1 a compressed sample must reach; None = the encoder's paper-equivalent default (0.9 for
    roberta-large, about 0.49 for the offline MiniLM, see docs/compression.md), a number = raw F1 of the encoder.
    rewriter: registry name or folder of the LLM that rewrites samples under the threshold; None = no rewriting
    (those samples fall back to their original text).
    """

    rate: float = _SECTION_RATE
    rates: dict[str, float] = field(default_factory=dict)
    compressor: str = _SECTION_METHOD
    model: str | None = None
    threshold: float | None = None
    rewriter: str | None = None
    max_rounds: int = 2
    n_examples: int = 2
    seed: int = 0
    contrastive: bool = False
    gate: bool | None = None              # None = the method's default (damoc gates, the baselines do not)
    encoder: str | None = None            # BERTScore encoder: HF id or folder; None = settings.encoder / MiniLM
    granularity: str = "word"             # word | token
    window: int = 200                     # LLMLingua's iterative_size, in tokens
    force_keep: str | None = None         # regex: units matching it are always kept (e.g. r"\d")
    length_tolerance: float = 0.1         # a rewrite may be at most this much longer than the compressed text
    max_new_tokens: int | None = None     # rewrite generation cap; None = from the compressed length
    batch_size: int | None = None
    use_cache: bool = True
    device: str | None = None             # None = settings.device

    def validate(self) -> "CompressConfig":
        if not 0.0 < float(self.rate) <= 1.0:
            raise ConfigError(f"rate {self.rate} is outside (0, 1]",
                              "rate is the share of tokens kept, e.g. 0.5 keeps half")
        for k, v in self.rates.items():
            if k not in FIELDS:
                raise ConfigError(f"per-field rate for unknown field {k!r}", f"fields: {', '.join(FIELDS)}")
            if not 0.0 < float(v) <= 1.0:
                raise ConfigError(f"rate for {k} = {v} is outside (0, 1]", "use a value like 0.5")
        if self.threshold is not None and not -1.0 <= float(self.threshold) <= 1.0:
            raise ConfigError(f"threshold {self.threshold} is not a BERTScore F1", "use a value in [-1, 1], e.g. 0.9")
        if self.max_rounds < 0:
            raise ConfigError(f"max_rounds {self.max_rounds} is negative", "use 0 to disable rewriting")
        if self.n_examples < 0:
            raise ConfigError(f"n_examples {self.n_examples} is negative", "use 0 for no examples")
        if self.granularity not in ("word", "token"):
            raise ConfigError(f"granularity {self.granularity!r} is not word or token", "use word (default) or token")
        if self.window < 8:
            raise ConfigError(f"window {self.window} is too small", "use at least 8 tokens (LLMLingua uses 200)")
        if self.length_tolerance < 0:
            raise ConfigError("length_tolerance is negative", "use e.g. 0.1 for +10%")
        if self.force_keep:
            import re
            try:
                re.compile(self.force_keep)
            except re.error as e:
                raise ConfigError(f"force_keep {self.force_keep!r} is not a valid regex ({e})",
                                  "e.g. --force-keep '\\d' keeps every word with a digit") from e
        return self

    def rate_for(self, name: str) -> float:
        return float(self.rates.get(name, self.rate))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CompressResult:
    """Compressed samples (same type; originals in `extra["original"]`, per-sample outcome in
    `extra["compression"]`) and the dataset's statistics."""

    samples: list[Any]
    stats: dict[str, Any]
