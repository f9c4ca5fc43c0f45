"""Distribution-aware methods: GraphCut, DQ, KCenterGreedy, Random (algorithms.md section 4).

All embed each sample with the local sentence encoder (prompt + answer, as DQ embeds `instruction [input] output`)
unless the caller passes embeddings, and run on unit vectors (cosine similarity).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from damoc.errors import ConfigError
from damoc.filters.base import FilterContext, FilterMethod, MethodParams, Scored
from damoc.filters.greedy import dq_bins, graphcut_greedy, kcenter_greedy

Text = Literal["sample", "prompt", "answer"]


@dataclass
class GraphCutParams(MethodParams):
    lam: float = 0.4
    """lambda of f(S) = sum_{i in V, j in S} s_ij - lambda sum_{i,j in S} s_ij: < 0.5 is monotone (representative),
    1.0 is DQ's diversity-heavy setting. The paper does not state its value."""
    optimizer: Literal["auto", "exact", "stochastic"] = "auto"
    """exact = submodlib's NaiveGreedy picks; stochastic = stochastic greedy; auto = exact until it gets costly."""
    text: Text = "sample"
    """What is embedded: sample (prompt + answer), prompt or answer."""
    pool: int = 4096
    """Points whose gains are tracked exactly between full refreshes (speed only; never changes exact picks)."""

    def validate(self) -> None:
        if self.lam < 0:
            raise ConfigError(f"graphcut: lam must be >= 0, got {self.lam}")
        if self.pool < 1:
            raise ConfigError("graphcut: pool must be >= 1")


class GraphCut(FilterMethod, name="graphcut"):
    Params = GraphCutParams
    uses_embeddings = True
    reference = ("Iyer et al. 2021 (submodlib GraphCutFunction); greedy gain sum_i s_ix - lam (2 sum_S s_jx + s_xx) "
                 "on a linear kernel, exact picks in O(n d) memory")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        p = self.params
        E = ctx.embeddings(p.text)
        tr = ctx.tracker("graphcut").start(budget)
        res = graphcut_greedy(E, budget, p.lam, device=ctx.device(), pool=p.pool, optimizer=p.optimizer,
                              seed=ctx.seed, tracker=tr)
        tr.finish("ok", **{k: v for k, v in res.stats.items() if k != "optimizer"})
        values = np.asarray(res.final, dtype=np.float64).copy()
        order = [int(i) for i in res.order]
        at_pick = {i: float(g) for i, g in zip(order, res.gains)}
        for i, g in at_pick.items():
            values[i] = g
        exact = int(res.stats["exact_picks"])

        def kept(i: int, rank: int) -> str:
            how = "exact greedy" if rank < exact else "stochastic greedy"
            return f"GraphCut pick {rank + 1} ({how}), marginal gain {at_pick[i]:.4g}"

        def dropped(i: int, kept_order: list[int]) -> str:
            if i in at_pick:
                return f"GraphCut pick {order.index(i) + 1}, after the budget (gain {at_pick[i]:.4g})"
            return f"not picked: marginal gain {values[i]:.4g} after the last pick"

        details = {"lam": p.lam, "exact_picks": exact, "stochastic_picks": int(res.stats["stochastic_picks"]),
                   "refreshes": int(res.stats["refreshes"])}
        return Scored(self.name, values, order, np.ones(len(values), dtype=bool), score_name="marginal_gain",
                      kept_reason=kept, drop_reason=dropped, complete=len(order) >= len(values),
                      details=details, extend=lambda b: self.score(ctx, b))


@dataclass
class DQParams(MethodParams):
    bins: int = 10
    """K, the number of bins (the reference script uses 10; its shipped Alpaca subsets use 5)."""
    lam: float = 1.0
    """GraphCut lambda inside the bin generation (DQ uses 1: diversity-heavy)."""
    text: Text = "sample"
    """What is embedded: sample (prompt + answer), prompt or answer."""
    pool: int = 4096
    """Exact-gain pool of the greedy (speed only)."""

    def validate(self) -> None:
        if self.bins < 1:
            raise ConfigError(f"dq: bins must be >= 1, got {self.bins}")


class DQ(FilterMethod, name="dq"):
    Params = DQParams
    uses_embeddings = True
    reference = ("Zhou et al. ICCV 2023, magic-research/Dataset_Quantization alpaca_sample.py: K bins of floor(n/K) "
                 "by GraphCut over the remaining pool (lambda 1), then floor(ratio * |bin|) uniformly per bin")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        p = self.params
        n = ctx.n
        K = min(p.bins, n)
        if K < p.bins:
            ctx.log(f"dq: {n} samples cannot fill {p.bins} bins; using {K}", "warning")
        E = ctx.embeddings(p.text)
        tr = ctx.tracker("dq-bins").start(n)
        bins = dq_bins(E, K, lam=p.lam, device=ctx.device(), pool=p.pool, tracker=tr)
        tr.finish("ok", bins=K)
        bin_of = np.zeros(n, dtype=np.int64)
        for b, members in enumerate(bins):
            bin_of[members] = b + 1
        sizes = [len(b) for b in bins]
        drawn: dict[int, int] = {}

        def picker(scored: Scored, k: int) -> list[int]:
            quota = _largest_remainder([k * s / n for s in sizes], k)
            out: list[int] = []
            drawn.clear()
            for b, (members, q) in enumerate(zip(bins, quota)):
                rng = np.random.default_rng([ctx.seed, b])        # one stream per bin: quotas do not interact
                take = rng.choice(len(members), size=q, replace=False) if q else []
                for j in take:
                    drawn[int(members[j])] = b + 1
                    out.append(int(members[j]))
            scored.details["per_bin"] = [int(q) for q in quota]
            return out

        def kept(i: int, rank: int) -> str:
            b = int(bin_of[i])
            return f"drawn uniformly from bin {b} of {K} ({sizes[b - 1]} samples)"

        def dropped(i: int, kept_order: list[int]) -> str:
            return f"in bin {int(bin_of[i])} of {K}, not drawn"

        return Scored(self.name, bin_of.astype(np.float64), [], np.ones(n, dtype=bool), score_name="bin",
                      kept_reason=kept, drop_reason=dropped, picker=picker,
                      details={"bins": K, "bin_sizes": sizes, "lam": p.lam})


def _largest_remainder(shares: list[float], total: int) -> list[int]:
    """Integer quotas summing to `total`, each floor(share) plus one for the largest remainders (ties: first)."""
    import math

    base = [math.floor(s) for s in shares]
    left = total - sum(base)
    order = sorted(range(len(shares)), key=lambda i: (-(shares[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return base


@dataclass
class KCenterParams(MethodParams):
    text: Text = "sample"
    """What is embedded: sample (prompt + answer), prompt or answer."""
    pool: int = 4096
    """Points tracked exactly between refreshes (speed only)."""


class KCenterGreedy(FilterMethod, name="kcentergreedy"):
    Params = KCenterParams
    uses_embeddings = True
    reference = ("Sener & Savarese ICLR 2018; google/active-learning kcenter_greedy.py (Euclidean, seeded first "
                 "centre)")

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        E = ctx.embeddings(self.params.text)
        tr = ctx.tracker("kcenter").start(budget)
        res = kcenter_greedy(E, budget, seed=ctx.seed, device=ctx.device(), pool=self.params.pool, tracker=tr)
        tr.finish("ok", refreshes=int(res.stats["refreshes"]))
        order = [int(i) for i in res.order]
        values = np.asarray(res.final, dtype=np.float64).copy()
        at_pick = {i: float(g) for i, g in zip(order, res.gains)}
        for i, g in at_pick.items():
            values[i] = g

        def kept(i: int, rank: int) -> str:
            if rank == 0:
                return "first centre (seeded random choice)"
            return f"centre {rank + 1}: distance {at_pick[i]:.4g} to the nearest earlier centre"

        def dropped(i: int, kept_order: list[int]) -> str:
            if i in at_pick:
                return f"centre {order.index(i) + 1}, after the budget"
            return f"covered: distance {values[i]:.4g} to the nearest centre"

        return Scored(self.name, values, order, np.ones(len(values), dtype=bool), score_name="distance",
                      kept_reason=kept, drop_reason=dropped, complete=len(order) >= len(values),
                      extend=lambda b: self.score(ctx, b))


class Random(FilterMethod, name="random"):
    reference = "uniform sampling without replacement (DQ's --random branch)"

    def score(self, ctx: FilterContext, budget: int) -> Scored:
        import numpy as np

        rng = np.random.default_rng(ctx.seed)
        values = rng.random(ctx.n)
        order = [int(i) for i in np.argsort(-values, kind="stable")]
        return Scored(self.name, values, order, np.ones(ctx.n, dtype=bool), score_name="draw",
                      kept_reason=lambda i, r: f"random draw {r + 1}",
                      drop_reason=lambda i, o: "not drawn")


__all__ = ["GraphCut", "DQ", "KCenterGreedy", "Random"]
