"""P(best) by a paired bootstrap over the test items.

Every candidate is scored on the same test items, so their errors are correlated: an item that is hard is hard for
all of them, and the gap between two candidates is far more certain than their standard errors suggest. The paired
bootstrap (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 6 and 16) draws the test items with
replacement, the same draw for every candidate, and counts how often each candidate has the highest mean score; a
tie shares the win equally. A candidate whose score is itself a prediction (an extrapolated learning curve) adds its
predictor's uncertainty as an independent normal draw on top.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from damoc.errors import DataError

DEFAULT_RESAMPLES = 2000
_CHUNK = 256        # resamples drawn at a time: the weight matrix is chunk x items


def _matrix(per_item: Mapping[str, Sequence[float]]) -> tuple[list[str], list[list[float]]]:
    names = list(per_item)
    if not names:
        raise DataError("no candidate scores to compare")
    n = {len(v) for v in per_item.values()}
    if len(n) != 1 or 0 in n:
        raise DataError("per-item scores of different lengths: the candidates were not scored on the same items",
                        "compare runs evaluated on the same test file")
    rows = [[float(x) for x in per_item[k]] for k in names]
    bad = [k for k, r in zip(names, rows) if not all(math.isfinite(x) for x in r)]
    if bad:
        raise DataError(f"{bad[0]}: a per-item score is not a finite number")
    return names, rows


def _wins(means: Sequence[Sequence[float]], tol: float = 1e-12) -> list[float]:
    """Win shares of one set of draws: means[b][i] for draw b and candidate i; ties split the win."""
    out = [0.0] * len(means[0])
    for row in means:
        top = max(row)
        best = [i for i, m in enumerate(row) if m >= top - tol]
        for i in best:
            out[i] += 1.0 / len(best)
    return out


def p_best(per_item: Mapping[str, Sequence[float]], *, spread: Mapping[str, float] | None = None,
           shift: Mapping[str, float] | None = None, resamples: int = DEFAULT_RESAMPLES,
           seed: int = 0) -> dict[str, float]:
    """The probability that each candidate has the highest expected score.

    `per_item[name]` are the candidate's scores on the shared test items (same order for all). `shift` moves a
    candidate's mean (e.g. to its predicted full-data score); `spread` is the standard deviation of that
    prediction, drawn independently per candidate and resample."""
    import numpy as np

    names, rows = _matrix(per_item)
    if len(names) == 1:
        return {names[0]: 1.0}
    x = np.asarray(rows)                                  # candidates x items
    k, n = x.shape
    offset = np.array([(shift or {}).get(nm, 0.0) for nm in names])
    sd = np.array([max(0.0, (spread or {}).get(nm, 0.0)) for nm in names])
    rng = np.random.default_rng(seed)
    wins = np.zeros(k)
    done = 0
    while done < resamples:
        b = min(_CHUNK, resamples - done)
        weights = rng.multinomial(n, np.full(n, 1.0 / n), size=b)          # b x items: a resample's item counts
        means = weights @ x.T / n + offset + rng.standard_normal((b, k)) * sd
        top = means.max(axis=1, keepdims=True)
        best = means >= top - 1e-12
        wins += (best / best.sum(axis=1, keepdims=True)).sum(axis=0)
        done += b
    return {nm: float(w / resamples) for nm, w in zip(names, wins)}


def p_best_exact(per_item: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The same probability with every one of the n**n resamples enumerated (no predictor spread): the bootstrap's
    exact value, for small test sets and for checking `p_best`."""
    names, rows = _matrix(per_item)
    n = len(rows[0])
    if n > 8:
        raise DataError(f"{n} items: {n}**{n} resamples are too many to enumerate", "use p_best (sampled)")
    draws = [[sum(r[j] for j in idx) / n for r in rows] for idx in itertools.product(range(n), repeat=n)]
    wins = _wins(draws)
    return {nm: w / len(draws) for nm, w in zip(names, wins)}
