"""Greedy submodular and k-center selection whose memory grows linearly with n (no n x n kernel).

All three work on row vectors E (n, d) with the linear kernel s_ij = <e_i, e_j> (cosine when the rows are unit
vectors, as `damoc.embeddings.encode` returns them).

GraphCut (submodlib's `GraphCutFunction`, cpp/submod/GraphCut.cpp): f(S) = sum_{i in V, j in S} s_ij
- lam * sum_{i, j in S} s_ij, marginal gain g(x|S) = sum_i s_ix - lam * (2 sum_{j in S} s_jx + s_xx). With a linear
kernel the gain is linear in e_x: g(x|S) = <e_x, c - 2 lam u_S> - lam |e_x|^2 with c = sum_i e_i and u_S = sum_{j in S}
e_j, so no kernel is ever needed. The exact (naive) greedy is accelerated without changing its picks: gains are
refreshed for all points (one matrix-vector product), the top `pool` points are then updated incrementally, and a pool
point is accepted while it provably beats every point outside the pool: an outside x had gain <= tau at the refresh
and can since have gained at most 2 lam |e_x| |u| (Cauchy-Schwarz, u = sum of the picks since the refresh).

KCenterGreedy (Sener & Savarese 2018; google/active-learning `kcenter_greedy.py`): farthest-first traversal. Distances
to the nearest centre only shrink, so stale values are upper bounds: the pool's exact distances are accepted while
they beat the largest stale value outside the pool, and the rest is refreshed against the new centres in one
matrix-matrix product (compute-bound instead of one memory-bound pass per pick).

FacilityLocation (submodlib `FacilityLocationFunction`): f(S) = sum_i max_{j in S} s_ij, a lazy greedy whose stale
upper bounds are re-evaluated in batches; O(n) memory, O(n^2 d) time for the first bounds, so it is meant for the
tens of thousands of points Superfiltering's diversity step sees, not for millions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from damoc.errors import ConfigError


@dataclass
class GreedyResult:
    order: Any                      # np.ndarray[int]: picked row indices (into the E given), in pick order
    gains: Any                      # np.ndarray[float]: the gain (GraphCut/FL) or distance (k-center) at each pick
    final: Any                      # np.ndarray[float] (n,): gain/distance of every row after the last pick
    stats: dict[str, Any] = field(default_factory=dict)


def _torch_rows(E: Any, device: str) -> Any:
    import numpy as np
    import torch

    if isinstance(E, torch.Tensor):
        X = E
    else:
        arr = np.ascontiguousarray(E, dtype=np.float32)
        X = torch.from_numpy(arr)
    if X.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-d array (n, d), got shape {tuple(X.shape)}")
    return X.to(device=device, dtype=torch.float32)


_SAVED_THREADS: list[int] = []


def _single_threaded(fn: Any) -> Any:
    """Run a greedy on one CPU thread: its per-pick ops touch vectors of a few thousand entries, where handing work
    to a second thread costs more than the work (measured 9x slower with 2 threads on 2 busy cores: GraphCut at
    n = 100k took 83 s instead of 9 s). Large products switch back inside `_wide()`."""
    import functools

    @functools.wraps(fn)
    def wrapper(E: Any, *args: Any, device: str = "cpu", **kwargs: Any) -> Any:
        import torch

        cpu = not str(device).startswith("cuda")
        saved = torch.get_num_threads()
        if cpu:
            torch.set_num_threads(1)
        _SAVED_THREADS.append(saved if cpu else 0)
        try:
            return fn(E, *args, device=device, **kwargs)
        finally:
            _SAVED_THREADS.pop()
            if cpu:
                torch.set_num_threads(saved)
    return wrapper


class _wide:
    """Inside a `_single_threaded` greedy: use every configured thread for one large matrix product."""

    def __enter__(self) -> None:
        import torch

        self.saved = _SAVED_THREADS[-1] if _SAVED_THREADS else 0
        if self.saved > 1:
            torch.set_num_threads(self.saved)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.saved > 1:
            torch.set_num_threads(1)


def _colsum_and_sqnorms(X: Any, block: int = 65536) -> tuple[Any, Any]:
    """Column sums (float64) and squared row norms, in row blocks: `(X * X).sum(1)` or a float64 cast of X would
    each allocate a second n x d array (1.5 GB at n = 1M)."""
    import torch

    c = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    sq = torch.empty(X.shape[0], dtype=torch.float32, device=X.device)
    for s in range(0, X.shape[0], block):
        B = X[s:s + block]
        c += B.sum(0, dtype=torch.float64)
        sq[s:s + block] = torch.linalg.vector_norm(B, dim=1).square()
    return c, sq


def _progress(tracker: Any, done: int) -> None:
    if tracker is not None:
        tracker.progress(done)


def _refresh_pool(values: Any, picked: Any, avail: int, pool: int) -> tuple[float, Any]:
    """The `pool` best unpicked points by `values` (picked ones already masked below every other) and tau, the best
    value left outside the pool (-inf when the pool holds every unpicked point). Ids come back ascending, so an
    argmax over the pool breaks ties by the lowest index, as submodlib does."""
    import torch

    k = min(pool, avail)
    if k < avail:
        top = torch.topk(values, k + 1)
        tau, idx = float(top.values[k]), top.indices[:k]
    else:
        tau, idx = -float("inf"), torch.nonzero(~picked).flatten()
    return tau, torch.sort(idx)[0]


@_single_threaded
def graphcut_greedy(E: Any, budget: int, lam: float = 0.4, *, device: str = "cpu", pool: int = 4096,
                    optimizer: str = "auto", seed: int = 0, epsilon: float = 0.01, max_exact_work: float = 1e10,
                    tracker: Any = None) -> GreedyResult:
    """Greedy GraphCut maximisation on the linear kernel of E.

    optimizer="exact" reproduces submodlib's NaiveGreedy pick sequence. "stochastic" is the stochastic greedy of
    Mirzasoleiman et al. (AAAI 2015, "Lazier than lazy greedy"; submodlib's StochasticGreedy): each pick is the best of
    a seeded random sample of ceil(n/budget * ln(1/epsilon)) remaining points (at least 256), a (1 - 1/e - epsilon)
    approximation in expectation. "auto" runs the exact greedy and switches to the stochastic one for the remaining
    picks once the exact one would cost more than `max_exact_work` multiply-adds: that happens when the picked sum
    balances the ground-set sum (u_S ~ c / 2 lam), where every point's gain sits in a narrow band, each pick reshuffles
    the order, and an exact pick needs a full pass over the data (typical of random embeddings, rare for text)."""
    import numpy as np
    import torch

    if lam < 0:
        raise ConfigError(f"GraphCut lambda must be >= 0, got {lam}")
    if optimizer not in ("auto", "exact", "stochastic"):
        raise ConfigError(f"unknown GraphCut optimizer {optimizer!r}", "use auto, exact or stochastic")
    X = _torch_rows(E, device)
    n, d = X.shape
    if not 0 < budget <= n:
        raise ConfigError(f"GraphCut budget {budget} outside 1..{n}")
    c, diag = _colsum_and_sqnorms(X)
    diag = diag.double()
    maxnorm = float(diag.max().sqrt()) if n else 0.0
    dmin, dmax = (float(diag.min()), float(diag.max())) if n else (0.0, 0.0)
    u_all = torch.zeros(d, dtype=torch.float64, device=X.device)   # sum of all picks
    picked = torch.zeros(n, dtype=torch.bool, device=X.device)
    order: list[int] = []
    gains: list[float] = []
    refreshes = 0
    per_refresh: list[int] = []
    inf = float("inf")
    exact = optimizer != "stochastic"
    while exact and len(order) < budget:
        if optimizer == "auto" and len(per_refresh) >= 8:
            rate = max(1e-9, sum(per_refresh[-8:]) / 8)
            spent = refreshes * n * d
            ahead = (budget - len(order)) / rate * n * d
            if spent + ahead > max_exact_work:
                exact = False
                break
        refreshes += 1
        start_picks = len(order)
        v64 = c - 2.0 * lam * u_all
        vnorm = float(v64.norm())
        vhat = v64 / vnorm if vnorm > 0 else v64
        g = (X @ v64.float()).double() - lam * diag
        g[picked] = -torch.inf
        tau, idx = _refresh_pool(g, picked, n - len(order), pool)
        gp = g[idx].clone()
        Xp = X[idx]
        u = torch.zeros(d, dtype=torch.float64, device=X.device)     # sum of the picks since this refresh
        slack = 1e-6 * (abs(tau) + 1.0) if tau != -inf else 0.0
        while len(order) < budget:
            j = int(torch.argmax(gp))
            best = float(gp[j])
            if best == -inf:
                break
            if tau != -inf and len(order) > start_picks:
                # Bound every outside point's gain now. Since the refresh it changed by -2 lam <x, u>. Split u
                # into its part along v (the refresh's gain direction: g0(x) + lam s_xx = |v| <x, vhat>) and the
                # rest w: g(x) = (1 - beta) (g0(x) + lam s_xx) - lam s_xx - 2 lam <x, w>, beta = 2 lam <u, vhat> / |v|.
                # With g0(x) <= tau this is <= (1 - beta) tau - beta lam s_xx + 2 lam |x| |w|. Early picks lie along
                # v, so this is far tighter than plain Cauchy-Schwarz on u.
                alpha = float(u @ vhat)
                beta = 2.0 * lam * alpha / vnorm if vnorm > 0 else inf
                if beta > 1.0:
                    break
                wnorm = float((u - alpha * vhat).norm())
                bound = (1.0 - beta) * tau - beta * lam * (dmin if beta >= 0 else dmax) + 2.0 * lam * maxnorm * wnorm
                if best < bound + slack:
                    break                 # an outside point might beat it: refresh
            x = int(idx[j])
            order.append(x)
            gains.append(best)
            picked[x] = True
            e = Xp[j]
            u += e.double()
            u_all += e.double()
            gp -= 2.0 * lam * (Xp @ e).double()
            gp[j] = -torch.inf
            if len(order) % 64 == 0:
                _progress(tracker, len(order))
        per_refresh.append(len(order) - start_picks)
    exact_picks = len(order)
    if len(order) < budget:
        # stochastic greedy for the rest: gains are exact for the sampled points (g = <x, v> - lam s_xx)
        rng = np.random.default_rng(seed)
        remaining = np.flatnonzero(~picked.cpu().numpy())
        pos = np.full(n, -1, dtype=np.int64)
        pos[remaining] = np.arange(len(remaining))
        todo = budget - len(order)
        size = int(max(256, np.ceil(n / budget * np.log(1.0 / epsilon))))
        v64 = c - 2.0 * lam * u_all
        live = len(remaining)
        for _ in range(todo):
            # a seeded sample of the live prefix of `remaining` (picked rows are swapped out of it); drawn with
            # replacement, which at size << n is the paper's sample up to rare repeats and far cheaper to draw
            cand = remaining[rng.integers(0, live, size=min(size, live) if live > size else live)] \
                if live > size else remaining[:live]
            rows = torch.from_numpy(np.ascontiguousarray(cand)).to(X.device)
            gs = (X.index_select(0, rows) @ v64.float()).double() - lam * diag.index_select(0, rows)
            j = int(torch.argmax(gs))
            x = int(cand[j])
            order.append(x)
            gains.append(float(gs[j]))
            picked[x] = True
            ex = X[x].double()
            v64 -= 2.0 * lam * ex
            u_all += ex
            i, last = int(pos[x]), live - 1                 # swap x out of the live prefix
            y = int(remaining[last])
            remaining[i], remaining[last] = y, x
            pos[y], pos[x] = i, last
            live -= 1
            if len(order) % 256 == 0:
                _progress(tracker, len(order))
    _progress(tracker, len(order))
    v = (c - 2.0 * lam * u_all).float()
    final = ((X @ v).double() - lam * diag).cpu().numpy()
    return GreedyResult(np.asarray(order, dtype=np.int64), np.asarray(gains), final,
                        {"refreshes": refreshes, "pool": pool, "exact_picks": exact_picks,
                         "stochastic_picks": len(order) - exact_picks,
                         "optimizer": optimizer})


def graphcut_value(E: Any, selected: Any, lam: float) -> float:
    """f(S) for the linear kernel (to compare optimizers): <c, u_S> - lam |u_S|^2."""
    import numpy as np

    X = np.asarray(E)
    u = X[np.asarray(selected, dtype=np.int64)].sum(0, dtype=np.float64)
    c = np.zeros(X.shape[1])
    for s in range(0, len(X), 65536):                # no float64 copy of X
        c += X[s:s + 65536].sum(0, dtype=np.float64)
    return float(c @ u - lam * (u @ u))


@_single_threaded
def kcenter_greedy(E: Any, budget: int, *, seed: int = 0, first: int | None = None, already: Any = None,
                   device: str = "cpu", pool: int = 4096, tracker: Any = None, block_rows: int = 8192
                   ) -> GreedyResult:
    """Exact farthest-first traversal with Euclidean distances. The first centre is `first`, else (when nothing is
    `already` selected) a seeded random row; MoDS's copy picks it with an unseeded `np.random.choice`."""
    import numpy as np
    import torch

    X = _torch_rows(E, device)
    n = X.shape[0]
    if not 0 < budget <= n:
        raise ConfigError(f"KCenterGreedy budget {budget} outside 1..{n}")
    _, sq = _colsum_and_sqnorms(X)

    def dists_to(centres: list[int], rows: Any = None) -> Any:
        """min over `centres` of the distance of every row (or of `rows`), in row blocks of bounded memory."""
        C = X[centres]
        sqc = sq[centres]
        sel = torch.arange(n, device=X.device) if rows is None else rows
        out = torch.empty(len(sel), dtype=torch.float32, device=X.device)
        step = max(1, min(block_rows, (1 << 26) // max(1, len(centres))))   # <= 64M floats per block
        with _wide():
            for s in range(0, len(sel), step):
                r = sel[s:s + step]
                d2 = sq[r, None] + sqc[None, :] - 2.0 * (X[r] @ C.T)
                out[s:s + step] = d2.clamp_min_(0).min(1).values
        return out.sqrt_()

    picked = torch.zeros(n, dtype=torch.bool, device=X.device)
    order: list[int] = []
    gains: list[float] = []
    dist = torch.full((n,), float("inf"), device=X.device)
    pre = [int(i) for i in (already if already is not None else [])]
    if pre:
        dist = dists_to(pre)
        picked[pre] = True
    else:
        start = int(first) if first is not None else int(np.random.default_rng(seed).integers(n))
        order.append(start)
        gains.append(float("inf"))
        picked[start] = True
        dist = dists_to([start])
    synced = len(order)                   # `dist` is exact w.r.t. order[:synced] (and `already`)
    refreshes = 0
    while len(order) < budget:
        if synced < len(order):
            dist = torch.minimum(dist, dists_to(order[synced:]))
            synced = len(order)
        refreshes += 1
        dist[picked] = -1.0
        tau, idx = _refresh_pool(dist, picked, n - int(picked.sum()), pool)
        dp = dist[idx].clone()
        Xp, sqp = X[idx], sq[idx]
        while len(order) < budget:
            j = int(torch.argmax(dp))
            best = float(dp[j])
            if best < 0 or best < tau:
                break                     # an outside point's (stale, upper-bound) distance may be larger
            x = int(idx[j])
            order.append(x)
            gains.append(best)
            picked[x] = True
            d2 = (sqp + sq[x] - 2.0 * (Xp @ X[x])).clamp_min_(0).sqrt_()
            dp = torch.minimum(dp, d2)
            dp[j] = -1.0
            if len(order) % 64 == 0:
                _progress(tracker, len(order))
    _progress(tracker, len(order))
    if synced < len(order):
        dist = torch.minimum(dist, dists_to(order[synced:]))
    dist[picked] = 0.0
    return GreedyResult(np.asarray(order, dtype=np.int64), np.asarray(gains), dist.cpu().numpy(),
                        {"refreshes": refreshes, "pool": pool})


@_single_threaded
def facility_location_greedy(E: Any, budget: int, *, device: str = "cpu", batch: int = 64, tracker: Any = None,
                             block_rows: int = 4096) -> GreedyResult:
    """Lazy greedy FacilityLocation, f(S) = sum_i max(0, max_{j in S} s_ij) (submodlib's FL with its zero start)."""
    import numpy as np
    import torch

    X = _torch_rows(E, device)
    n = X.shape[0]
    if not 0 < budget <= n:
        raise ConfigError(f"FacilityLocation budget {budget} outside 1..{n}")
    cur = torch.zeros(n, dtype=torch.float64, device=X.device)     # similarity of each i to its nearest pick

    def exact_gains(cands: Any) -> Any:
        out = torch.zeros(len(cands), dtype=torch.float64, device=X.device)
        C = X[cands]
        with _wide():
            for s in range(0, n, block_rows):
                sims = (X[s:s + block_rows] @ C.T).double()            # (rows, cands)
                out += (sims - cur[s:s + block_rows, None]).clamp_min_(0).sum(0)
        return out

    ub = torch.empty(n, dtype=torch.float64, device=X.device)
    for s in range(0, n, batch * 16):
        ub[s:s + batch * 16] = exact_gains(torch.arange(s, min(n, s + batch * 16), device=X.device))
    fresh = torch.ones(n, dtype=torch.bool, device=X.device)      # ub is exact for the current selection
    picked = torch.zeros(n, dtype=torch.bool, device=X.device)
    order: list[int] = []
    gains: list[float] = []
    evaluations = n
    while len(order) < budget:
        ub[picked] = -torch.inf
        j = int(torch.argmax(ub))
        if bool(fresh[j]):
            # exact and no stale bound is larger: the true argmax (ties: the lowest index with this value)
            order.append(j)
            gains.append(float(ub[j]))
            picked[j] = True
            cur = torch.maximum(cur, (X @ X[j]).double())
            fresh[:] = False
            if len(order) % 16 == 0:
                _progress(tracker, len(order))
            continue
        k = min(batch, n - len(order))
        cands = torch.topk(ub, k).indices
        ub[cands] = exact_gains(cands)
        fresh[cands] = True
        evaluations += k
    _progress(tracker, len(order))
    final = torch.zeros(n, dtype=torch.float64, device=X.device)
    if len(order) < n:
        final[~picked] = exact_gains(torch.nonzero(~picked).flatten())
    return GreedyResult(np.asarray(order, dtype=np.int64), np.asarray(gains), final.cpu().numpy(),
                        {"evaluations": evaluations})


def dq_bins(E: Any, bins: int, *, lam: float = 1.0, device: str = "cpu", pool: int = 4096,
            tracker: Any = None) -> list[Any]:
    """Dataset Quantization bins (Zhou et al. 2023; magic-research/Dataset_Quantization `alpaca_sample.py`):
    bin k = greedy GraphCut of size floor(n/K) over the pool left by bins 1..k-1, with the column sums over that
    remaining pool. The n - K*floor(n/K) leftovers, which the reference never bins, go into the last bin."""
    import numpy as np

    n = len(E)
    if not 1 <= bins <= n:
        raise ConfigError(f"DQ needs 1 <= bins <= n, got bins={bins} for n={n}")
    per = n // bins
    remaining = np.arange(n)
    out: list[Any] = []
    for b in range(bins):
        if b == bins - 1:
            out.append(remaining.copy())
            break
        res = graphcut_greedy(np.asarray(E)[remaining], per, lam, device=device, pool=pool)
        chosen = remaining[res.order]
        out.append(chosen)
        keep = np.ones(len(remaining), dtype=bool)
        keep[res.order] = False
        remaining = remaining[keep]
        _progress(tracker, n - len(remaining))
    _progress(tracker, n)
    return out
