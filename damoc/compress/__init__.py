"""Token compression of training samples (DaMoC section 3.2): perplexity-based compression of the question side
(LLMLingua-style, iterative, with a budget controller), question-conditioned compression of the answer (Eq. 2), a
BERTScore gate (Eq. 1) and iterative LLM rewriting of the samples that fail it; plus the LLMLingua and LongLLMLingua
baselines. Light at import time: torch, transformers and bert-score load inside the functions that need them.

    from damoc.compress import CompressConfig, compress_dataset
    res = compress_dataset(samples, CompressConfig(rate=0.5, model="llama-tiny"))
    res.samples, res.stats["keep_rate"]
"""
from __future__ import annotations

from typing import Any

from damoc.compress.config import FIELDS, CompressConfig, CompressResult
from damoc.compress.method import COMPRESSORS, Compressor
from damoc.events import Reporter
from damoc.settings import Settings

# The index: each compressor's metadata, written once (`gate`: whether the BERTScore gate applies by default).
COMPRESSORS.add("damoc", "damoc.compress.answer:DaMoC", family="damoc", gate=True,
                description="DaMoC: question fields LLMLingua-style, answer by question-conditioned perplexity (Eq. 2),"
                            " exact per-field budget, BERTScore gate + rewriting")
COMPRESSORS.add("llmlingua", "damoc.compress.baselines:LLMLingua", family="baseline", gate=False,
                aliases=("llm-lingua",),
                description="LLMLingua: question-agnostic, whole sample, iterative token level, quantile threshold")
COMPRESSORS.add("longllmlingua", "damoc.compress.baselines:LongLLMLingua", family="baseline", gate=False,
                aliases=("long-llmlingua",),
                description="LongLLMLingua: question-aware coarse-to-fine, contrastive token scores, dynamic ratios")


def compress_dataset(samples: list[Any], config: CompressConfig | None = None, *, reporter: Reporter | None = None,
                     settings: Settings | None = None) -> CompressResult:
    """See `damoc.compress.core.compress_dataset`."""
    from damoc.compress.core import compress_dataset as _run

    return _run(samples, config, reporter=reporter, settings=settings)


__all__ = ["COMPRESSORS", "Compressor", "FIELDS", "CompressConfig", "CompressResult", "compress_dataset"]
