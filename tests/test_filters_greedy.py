"""The scalable greedy cores against their references: submodlib's dense GraphCut / FacilityLocation and a naive
farthest-first traversal. No models here: random and clustered vectors only."""
from __future__ import annotations

import numpy as np
import pytest

from damoc.filters.greedy import (dq_bins, facility_location_greedy, graphcut_greedy, graphcut_value,
                                  kcenter_greedy)


def unit(rng, n, d):
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("n,d,budget,lam", [(800, 32, 80, 0.4), (500, 384, 50, 0.4), (600, 16, 100, 1.0)])
def test_graphcut_equals_submodlib_dense_naive_greedy(n, d, budget, lam):
    import submodlib
    X = unit(np.random.default_rng(n), n, d)
    K = (X @ X.T).astype(np.float64)
    ref = submodlib.GraphCutFunction(n=n, mode="dense", lambdaVal=lam, ggsijs=K)
    picks = ref.maximize(budget=budget, optimizer="NaiveGreedy", show_progress=False)
    # a small pool forces many refreshes: the certificate, not the pool size, must keep the picks exact
    ours = graphcut_greedy(X, budget, lam, pool=32, optimizer="exact")
    assert list(ours.order) == [i for i, _ in picks]
    assert np.allclose(ours.gains, [g for _, g in picks], rtol=1e-4, atol=1e-3)
    assert ours.stats["refreshes"] > 1


def test_graphcut_greedy_is_a_prefix_and_deterministic():
    X = unit(np.random.default_rng(1), 1000, 24)
    a = graphcut_greedy(X, 40, 0.4, pool=64)
    b = graphcut_greedy(X, 90, 0.4, pool=64)
    assert list(b.order[:40]) == list(a.order)              # another ratio = another prefix
    assert list(graphcut_greedy(X, 90, 0.4, pool=64).order) == list(b.order)
    assert len(set(b.order.tolist())) == 90


def test_graphcut_auto_switches_to_stochastic_and_stays_close_to_exact():
    X = unit(np.random.default_rng(2), 6000, 64)
    exact = graphcut_greedy(X, 600, 0.4, optimizer="exact")
    auto = graphcut_greedy(X, 600, 0.4, optimizer="auto", max_exact_work=2e7, seed=3)
    assert auto.stats["stochastic_picks"] > 0 and auto.stats["exact_picks"] > 0
    assert list(auto.order[:auto.stats["exact_picks"]]) == list(exact.order[:auto.stats["exact_picks"]])
    f_exact, f_auto = graphcut_value(X, exact.order, 0.4), graphcut_value(X, auto.order, 0.4)
    f_random = graphcut_value(X, np.random.default_rng(0).choice(6000, 600, replace=False), 0.4)
    assert f_auto >= 0.99 * f_exact
    assert f_auto > 2 * f_random
    again = graphcut_greedy(X, 600, 0.4, optimizer="auto", max_exact_work=2e7, seed=3)
    assert list(again.order) == list(auto.order)            # deterministic for a seed


def test_facility_location_equals_submodlib_dense():
    import submodlib
    X = unit(np.random.default_rng(800), 800, 32)
    K = (X @ X.T).astype(np.float64)
    fl = submodlib.FacilityLocationFunction(n=800, mode="dense", sijs=K, separate_rep=False)
    picks = fl.maximize(budget=80, optimizer="NaiveGreedy", show_progress=False)
    ours = facility_location_greedy(X, 80, batch=16)
    assert list(ours.order) == [i for i, _ in picks]
    assert np.allclose(ours.gains, [g for _, g in picks], rtol=1e-4)


def _naive_kcenter(X, budget, start):
    d = np.linalg.norm(X - X[start], axis=1)
    order = [start]
    for _ in range(budget - 1):
        j = int(np.argmax(d))
        order.append(j)
        d = np.minimum(d, np.linalg.norm(X - X[j], axis=1))
    return order


def test_kcenter_equals_naive_farthest_first():
    X = np.random.default_rng(4).standard_normal((700, 20)).astype(np.float32)
    ours = kcenter_greedy(X, 100, first=5, pool=32)
    assert list(ours.order) == _naive_kcenter(X, 100, 5)
    assert ours.stats["refreshes"] > 1


def test_kcenter_covers_outliers_first():
    rng = np.random.default_rng(5)
    core = rng.standard_normal((500, 8)).astype(np.float32) * 0.1
    outliers = np.eye(8, dtype=np.float32)[:5] * 10
    X = np.vstack([core, outliers])
    res = kcenter_greedy(X, 6, seed=0)
    assert set(range(500, 505)) <= set(res.order.tolist())  # every far point is a centre
    # the final distances say how well each point is covered: all core points lie within the core's radius
    assert res.final[:500].max() < 1.5


def test_dq_bins_partition_the_pool():
    X = unit(np.random.default_rng(6), 1003, 16)
    bins = dq_bins(X, 10, lam=1.0)
    allidx = np.concatenate(bins)
    assert sorted(allidx.tolist()) == list(range(1003))     # disjoint and complete
    assert [len(b) for b in bins[:-1]] == [100] * 9 and len(bins[-1]) == 103   # leftovers go to the last bin
    # bin 1 is exactly one greedy GraphCut (lambda 1) over the whole pool
    assert list(bins[0]) == list(graphcut_greedy(X, 100, 1.0).order)


def test_bad_inputs_fail_clearly():
    from damoc.errors import ConfigError

    X = unit(np.random.default_rng(7), 10, 4)
    with pytest.raises(ConfigError, match="budget 11 outside"):
        graphcut_greedy(X, 11)
    with pytest.raises(ConfigError, match="lambda"):
        graphcut_greedy(X, 2, lam=-1)
    with pytest.raises(ConfigError, match="2-d"):
        graphcut_greedy(np.zeros(5), 1)
