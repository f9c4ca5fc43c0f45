"""LLMLingua-style iterative token-level compression (design/algorithms.md 1.4), the engine every method uses.

A field is cut into windows of about `window` tokens (whole units). Each window is scored by the small LM
conditioned on everything already compressed before it (earlier fields and earlier windows, compressed) and on its
own uncompressed tokens: p(s_j,i | s~_<j, s_j,<i), LLMLingua's "iterative" compression. Then a rule decides which
units of the window survive. A field shorter than a window is one window, so short Q/A fields compress too (the
reference code returns prompts under `iterative_size` untouched, microsoft/LLMLingua#196).

Methods are generators: they `yield` a list of scoring requests and receive the losses, so the driver can batch the
requests of many samples into one forward pass.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from damoc.compress.budget import quantile_threshold, select_to_budget, unit_scores
from damoc.compress.text import FieldTokens
from damoc.compress.token_loss import Request


@dataclass
class Env:
    """What a method needs besides the sample: the scorer's start token, a field separator, the window size."""

    start: list[int]
    sep: list[int]
    window: int
    rule: str = "budget"                      # budget (damoc) | quantile (LLMLingua's threshold)
    history: list[float] = field(default_factory=list)   # quantile rule: scores seen so far in this sample
    carry: float = 0.0                        # budget rule: tokens owed (+) or overspent (-) by earlier windows


def windows(ft: FieldTokens, a: int, b: int, size: int) -> list[tuple[int, int]]:
    """Unit ranges [i, j) within [a, b) of at most `size` tokens (a single larger unit is a window alone)."""
    out = []
    i = a
    while i < b:
        j, n = i, 0
        while j < b and (j == i or n + ft.units[j].size <= size):
            n += ft.units[j].size
            j += 1
        out.append((i, j))
        i = j
    return out


def iterative(ft: FieldTokens, ratio: float, env: Env, *, prefix: list[int], prefix0: list[int] | None = None,
              carried: list[int] | None = None, span: tuple[int, int] | None = None, min_keep: int = 1
              ) -> Generator[list[Request], list[np.ndarray], tuple[list[bool], list[float]]]:
    """Compress units [a, b) of `ft` to about `ratio` of their tokens; returns (keep mask, unit scores) for them.

    `prefix` = compressed text before this field (ids, without the start token); `carried` = this field's own
    compressed text before the stretch (when a field is compressed in several stretches). With `prefix0` set, the score
    is contrastive (LongLLMLingua 1.5): s = loss(token | prefix0 ...) - loss(token | prefix ...), i.e. how much the
    condition in `prefix` (the question) raises the token's probability; without it the score is the loss itself
    (high loss = informative = keep)."""
    a, b = span or (0, len(ft.units))
    n_units = b - a
    keep: list[bool] = [True] * n_units
    scores: list[float] = [math.inf] * n_units
    if n_units == 0:
        return keep, scores
    if ratio >= 1.0 or ft.protected:
        return keep, scores
    kept_here: list[int] = list(carried or [])
    carry = env.carry                         # rounding left over by earlier fields of the sample
    for i, j in windows(ft, a, b, env.window):
        t0, t1 = ft.units[i].start, ft.units[j - 1].end
        targets = ft.ids[t0:t1]
        sep = env.sep if prefix else []
        reqs = [Request(env.start + prefix + sep + kept_here, targets)]
        if prefix0 is not None:
            sep0 = env.sep if prefix0 else []
            reqs.append(Request(env.start + prefix0 + sep0 + kept_here, targets))
        losses = yield reqs
        tok = losses[0] if prefix0 is None else losses[1] - losses[0]
        spans = [(ft.units[k].start - t0, ft.units[k].end - t0) for k in range(i, j)]
        us = unit_scores(tok, spans)
        sizes = [ft.units[k].size for k in range(i, j)]
        forced = [ft.units[k].forced for k in range(i, j)]
        if env.rule == "quantile":
            env.history.extend(us)
            gamma = quantile_threshold(env.history, ratio)
            win_keep = [f or s > gamma for s, f in zip(us, forced)]
            # earlier survivors stay in the distribution, dropped units leave it (as the reference's compressed cache)
            env.history[:] = [s for s in env.history[: len(env.history) - len(us)]] + \
                             [s for s, k in zip(us, win_keep) if k]
        else:
            target = ratio * sum(sizes) + carry
            win_keep = select_to_budget(us, sizes, target, forced)
            carry = target - sum(s for s, k in zip(sizes, win_keep) if k)
        for off, k in enumerate(range(i, j)):
            keep[k - a] = win_keep[off]
            scores[k - a] = us[off]
            if win_keep[off]:
                kept_here.extend(ft.ids[ft.units[k].start:ft.units[k].end])
    if sum(keep) < min(min_keep, n_units):          # never empty a non-empty stretch
        best = max(range(n_units), key=lambda k: (scores[k], -k))
        keep[best] = True
        carry -= ft.units[a + best].size
    env.carry = max(min(carry, float(env.window)), -float(env.window))
    return keep, scores


def compress_prompt_fields(fields: dict[str, FieldTokens], ratios: dict[str, float], env: Env, order: tuple[str, ...]
                           ) -> Generator[list[Request], list[np.ndarray], tuple[dict[str, list[bool]], list[int]]]:
    """The question side of DaMoC: instruction, question and context compressed in order, each conditioned on the
    compressed fields before it. Returns the keep masks and the compressed prompt ids (the condition for Eq. 2)."""
    keeps: dict[str, list[bool]] = {}
    prefix: list[int] = []
    for name in order:
        ft = fields.get(name)
        if ft is None or not ft.units:
            continue
        keep, _ = yield from iterative(ft, ratios.get(name, 1.0), env, prefix=prefix)
        keeps[name] = keep
        kept = ft.kept_ids(keep)
        prefix = prefix + (env.sep if prefix and kept else []) + kept
    return keeps, prefix
