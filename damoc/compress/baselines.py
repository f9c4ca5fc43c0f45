"""The token-compression baselines the paper compares against, as methods on the same engine.

- `llmlingua` (Jiang et al. 2023, EMNLP): question-agnostic. The whole sample (instruction, question, context,
  answer, in that order) is compressed as one stream at the global rate, window by window, each conditioned on what
  is already compressed, with LLMLingua's quantile threshold over every score seen so far. No per-field budget, so
  the achieved rate drifts as it does in the reference implementation (design/algorithms.md 1.3-1.4).
- `longllmlingua` (Jiang et al. 2024, ACL): question-aware coarse-to-fine. The question (instruction + question)
  is kept whole and subtracted from the budget. Coarse: the context is split into documents (its lines, or its
  sentences), ranked by the loss of the question given each document (ascending, LongLLMLingua's `rank_method`),
  and kept in rank order up to the budget + 100 tokens (`context_budget="+100"`). Fine: each kept document gets the
  dynamic ratio base +- delta by rank (delta = 0.3) and is compressed with the contrastive score against the question;
  the answer too. Kept documents stay in their original order (training text should read in order).
"""
from __future__ import annotations

import re

import numpy as np

from damoc.compress.budget import dynamic_ratios
from damoc.compress.config import FIELDS
from damoc.compress.method import Compressor, Masks
from damoc.compress.question import Env, compress_prompt_fields, iterative
from damoc.compress.text import FieldTokens
from damoc.compress.token_loss import Request

COARSE_EXTRA_TOKENS = 100
DYNAMIC_DELTA = 0.3


class LLMLingua(Compressor, name="llmlingua"):
    def compress(self, fields: dict[str, FieldTokens], ratios: dict[str, float], env: Env, *,
                 contrastive: bool = False, rate: float = 0.5) -> Masks:
        env.rule = "quantile"
        env.history = []
        # every field, the answer included, compressed in order like DaMoC's question side (no Eq. 2 conditioning)
        keeps, _ = yield from compress_prompt_fields(fields, ratios, env, FIELDS)
        return keeps


_SENT = re.compile(r"(?<=[.!?])\s+")


def documents(ft: FieldTokens) -> list[tuple[int, int]]:
    """Unit ranges of the context's documents: one per non-empty line, or per sentence for a single line."""
    text = ft.text
    lines = [m.span() for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    if len(lines) <= 1:
        bounds, pos = [], 0
        for m in _SENT.finditer(text):
            bounds.append((pos, m.start()))
            pos = m.end()
        bounds.append((pos, len(text)))
        lines = [b for b in bounds if text[b[0]:b[1]].strip()]
    out: list[tuple[int, int]] = []
    k = 0
    for _, end in lines:
        a = k
        while k < len(ft.units) and ft.units[k].cs < end:
            k += 1
        if k > a:
            out.append((a, k))
    if k < len(ft.units):                            # anything after the last boundary joins the last document
        out = out[:-1] + [(out[-1][0], len(ft.units))] if out else [(k, len(ft.units))]
    return out


class LongLLMLingua(Compressor, name="longllmlingua"):
    def compress(self, fields: dict[str, FieldTokens], ratios: dict[str, float], env: Env, *,
                 contrastive: bool = False, rate: float = 0.5) -> Masks:
        keeps: dict[str, list[bool]] = {}
        q_ids: list[int] = []
        q_tokens = 0
        for name in ("instruction", "question"):
            ft = fields.get(name)
            if ft is not None and ft.units:
                keeps[name] = [True] * len(ft.units)
                q_ids = q_ids + (env.sep if q_ids else []) + ft.ids
                q_tokens += ft.n_tokens
        ctx, ans = fields.get("context"), fields.get("answer")
        ctx_n = ctx.n_tokens if ctx is not None else 0
        ans_n = ans.n_tokens if ans is not None and not ans.protected else 0
        total = q_tokens + ctx_n + (ans.n_tokens if ans is not None else 0)
        fixed = q_tokens + (ans.n_tokens if ans is not None and ans.protected else 0)
        tau = (rate * total - fixed) / max(ctx_n + ans_n, 1)
        tau = min(max(tau, 0.05), 1.0)

        ctx_prefix: list[int] = []
        if ctx is not None and ctx.units:
            keep = [False] * len(ctx.units)
            docs = documents(ctx)
            target = tau * ctx_n
            if len(docs) > 1 and q_ids:
                reqs = [Request(env.start + ctx.ids[ctx.units[a].start:ctx.units[b - 1].end] + env.sep, q_ids)
                        for a, b in docs]
                losses = yield reqs
                qloss = [float(np.nanmean(x)) if len(x) else float("inf") for x in losses]
                ranked = sorted(range(len(docs)), key=lambda d: (qloss[d], d))
            else:
                ranked = list(range(len(docs)))
            chosen, n = [], 0
            for d in ranked:                             # coarse: documents in rank order up to budget + 100 tokens
                if n >= target + COARSE_EXTRA_TOKENS and chosen:
                    break
                chosen.append(d)
                a, b = docs[d]
                n += ctx.units[b - 1].end - ctx.units[a].start
            base = min(target / max(n, 1), 1.0)
            rank_ratio = dict(zip(chosen, dynamic_ratios(base, len(chosen), DYNAMIC_DELTA)))
            kept_ctx: list[int] = []
            for d in sorted(chosen):                     # fine: original order, contrastive against the question
                a, b = docs[d]
                sub, _ = yield from iterative(ctx, rank_ratio[d], env, prefix=q_ids, prefix0=[] if q_ids else None,
                                              carried=kept_ctx, span=(a, b))
                keep[a:b] = sub
                kept_ctx = ctx.kept_ids(keep)
            if not any(keep):
                keep[0] = True
            keeps["context"] = keep
            ctx_prefix = ctx.kept_ids(keep)
        if ans is not None and ans.units:
            cond = q_ids + (env.sep if q_ids and ctx_prefix else []) + ctx_prefix
            keeps["answer"], _ = yield from iterative(ans, 1.0 if ans.protected else tau, env, prefix=cond,
                                                      prefix0=ctx_prefix if q_ids else None)
        return keeps
