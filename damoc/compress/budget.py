"""Budget control: which units of a window survive.

Two rules:
- `select_to_budget` (damoc): keep the highest-scoring units until the window's token budget is met, carrying the
  rounding remainder to the next window, so a field ends within about one unit of `ratio * tokens`. This is the
  budget controller the paper takes from LLMLingua, made exact: LLMLingua's quantile threshold drifts from the
  requested rate, most on short inputs (microsoft/LLMLingua#195, #61).
- `quantile_threshold` (the `llmlingua` baseline): LLMLingua's `get_estimate_threshold_base_distribution`: the score
  at the ratio-quantile of every score seen so far (earlier survivors included); a unit survives if its score is
  above it. Our deliberate deviation from the reference code: a score belongs to its own token (the reference keeps
  token k when token k+1 is surprising, design/algorithms.md 1.4).
"""
from __future__ import annotations

import math
from collections.abc import Sequence


def unit_scores(token_scores: Sequence[float], spans: Sequence[tuple[int, int]]) -> list[float]:
    """Mean token score per unit; NaN (a token nothing predicts, e.g. the first one without BOS) counts as +inf so
    it is kept rather than silently dropped."""
    out = []
    for a, b in spans:
        vals = [float(token_scores[i]) for i in range(a, b)]
        if not vals or any(math.isnan(v) for v in vals):
            out.append(math.inf)
        else:
            out.append(sum(vals) / len(vals))
    return out


def select_to_budget(scores: Sequence[float], sizes: Sequence[int], target: float,
                     forced: Sequence[bool] | None = None) -> list[bool]:
    """Keep forced units, then the best-scoring units while keeping moves the total closer to `target` tokens.

    Ties go to the earlier unit, so results do not depend on sort stability."""
    n = len(scores)
    keep = [bool(forced[i]) if forced is not None else False for i in range(n)]
    kept = sum(s for s, k in zip(sizes, keep) if k)
    for i in sorted(range(n), key=lambda j: (-scores[j], j)):
        if keep[i]:
            continue
        if kept + sizes[i] - target <= target - kept:      # adding i lands at least as close to the target
            keep[i] = True
            kept += sizes[i]
    return keep


def quantile_threshold(history: Sequence[float], ratio: float) -> float:
    """LLMLingua's threshold: sort descending, take index clamp(int(N * ratio) - 1); ratio >= 1 keeps everything."""
    vals = sorted((v for v in history if not math.isnan(v)), reverse=True)
    if ratio >= 1.0 or not vals:
        return -math.inf
    idx = min(max(int(len(vals) * ratio) - 1, 0), len(vals) - 1)
    return vals[idx]


def dynamic_ratios(base: float, n: int, delta: float) -> list[float]:
    """LongLLMLingua's dynamic compression ratio: the document at rank r (0 = best) keeps
    clip(base + delta * (n - 1 - 2r) / (n - 1), 0, 1) of its tokens."""
    if n <= 1:
        return [min(max(base, 0.0), 1.0)] * n
    return [min(max(base + delta * (n - 1 - 2 * r) / (n - 1), 0.0), 1.0) for r in range(n)]


def field_ratios(lengths: dict[str, int], rate: float, explicit: dict[str, float], protected: set[str],
                 floor: float = 0.05) -> dict[str, float]:
    """Per-field keep ratios for one sample.

    Fields with an explicit rate get it; protected fields keep everything. The other fields share what is left of
    the sample's budget (`rate` times all its tokens, as LLMLingua subtracts the uncompressed parts from the target),
    so the sample as a whole lands on `rate` when protected text is present."""
    ratios: dict[str, float] = {}
    total = sum(lengths.values())
    fixed = 0.0
    free_tokens = 0
    for name, n in lengths.items():
        if name in protected:
            ratios[name] = 1.0
            fixed += n
        elif name in explicit:
            ratios[name] = explicit[name]
            fixed += explicit[name] * n
        else:
            free_tokens += n
    if free_tokens:
        share = (rate * total - fixed) / free_tokens
        share = min(max(share, floor), 1.0)
        for name, n in lengths.items():
            if name not in ratios:
                ratios[name] = share
    return ratios
