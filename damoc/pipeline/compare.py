"""Agreement of two rankings (e.g. DaMoC vs ground truth): top-1 agreement, Kendall tau-b, Spearman rho, and the
wall-time ratio of the two runs. Pure functions over candidate -> score maps; only candidates scored in both runs
count. Definitions follow scipy.stats.kendalltau (tau-b, ties handled) and spearmanr (average ranks for ties).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def kendall_tau_b(x: list[float], y: list[float]) -> float | None:
    """tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)); None when undefined (fewer than 2 items or a constant list)."""
    n = len(x)
    if n != len(y):
        raise ValueError("rankings of different lengths")
    if n < 2:
        return None
    conc = disc = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            sx, sy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
            if sx == 0 and sy == 0:
                ties_x += 1
                ties_y += 1
            elif sx == 0:
                ties_x += 1
            elif sy == 0:
                ties_y += 1
            elif sx == sy:
                conc += 1
            else:
                disc += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - ties_x) * (n0 - ties_y))
    return None if denom == 0 else (conc - disc) / denom


def average_ranks(values: list[float], *, descending: bool = True) -> list[float]:
    """1-based ranks, ties get the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: -values[i] if descending else values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: list[float], y: list[float]) -> float | None:
    """Pearson correlation of the average ranks; None when undefined."""
    if len(x) != len(y):
        raise ValueError("rankings of different lengths")
    if len(x) < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return None if vx == 0 or vy == 0 else cov / math.sqrt(vx * vy)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    common: list[str]
    top1_a: str | None
    top1_b: str | None
    top1_agree: bool
    kendall_tau: float | None
    spearman_rho: float | None
    seconds_a: float
    seconds_b: float
    time_ratio: float | None            # seconds_b / seconds_a: how many times longer B took than A
    train_seconds_a: float = 0.0
    train_seconds_b: float = 0.0
    train_time_ratio: float | None = None
    ranking_a: list[str] = field(default_factory=list)
    ranking_b: list[str] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def compare_scores(scores_a: dict[str, float], scores_b: dict[str, float], *, run_a: str = "A", run_b: str = "B",
                   seconds_a: float = 0.0, seconds_b: float = 0.0, train_seconds_a: float = 0.0,
                   train_seconds_b: float = 0.0, order_a: list[str] | None = None,
                   order_b: list[str] | None = None) -> Comparison:
    """Compare two candidate -> score maps (higher is better) over the candidates both scored.

    Top-1 is taken over the common candidates (a candidate that failed in one run cannot be the agreed winner),
    in the order `order_a`/`order_b` when given (the leaderboards' order, which breaks exact ties by the secondary
    score), else by score then name.
    """
    common = sorted(set(scores_a) & set(scores_b))
    xa = [scores_a[c] for c in common]
    xb = [scores_b[c] for c in common]
    rank_a = [c for c in order_a if c in common] if order_a else sorted(common, key=lambda c: (-scores_a[c], c))
    rank_b = [c for c in order_b if c in common] if order_b else sorted(common, key=lambda c: (-scores_b[c], c))
    top_a = rank_a[0] if rank_a else None
    top_b = rank_b[0] if rank_b else None
    agree = top_a is not None and top_a == top_b   # exact ties are broken by name in both rankings
    return Comparison(run_a=run_a, run_b=run_b, common=common, top1_a=top_a, top1_b=top_b, top1_agree=agree,
                      kendall_tau=kendall_tau_b(xa, xb), spearman_rho=spearman_rho(xa, xb),
                      seconds_a=seconds_a, seconds_b=seconds_b, time_ratio=_ratio(seconds_b, seconds_a),
                      train_seconds_a=train_seconds_a, train_seconds_b=train_seconds_b,
                      train_time_ratio=_ratio(train_seconds_b, train_seconds_a),
                      ranking_a=rank_a, ranking_b=rank_b,
                      only_a=sorted(set(scores_a) - set(scores_b)), only_b=sorted(set(scores_b) - set(scores_a)))
